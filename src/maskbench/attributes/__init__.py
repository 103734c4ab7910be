"""The attribute study: what a masked face still gives away (sex, race, age)."""
