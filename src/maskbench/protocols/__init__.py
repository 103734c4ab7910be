"""Who is compared with whom: splits, verification pairs, identification galleries."""
