"""The attribute study's labels: tasks, class names and age groups (AJCAI 2021's), without sklearn."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

SEX_CLASSES = ("male", "female")
RACE_CLASSES = ("white", "black", "asian", "indian", "others")
# Upper bounds (inclusive) of AJCAI's age groups 0-3, 4-12, 13-19, 20-30, 31-45, 46-60, 61+.
DEFAULT_AGE_GROUPS = (3, 12, 19, 30, 45, 60)
TASKS = ("sex", "race", "age", "age_group")
HEADS = ("linear", "mlp")
DEFAULT_THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


class TaskError(ValueError):
    """A task that cannot be learned from the data given (e.g. one class in train)."""


def age_group_names(bounds: Sequence[int] = DEFAULT_AGE_GROUPS) -> list[str]:
    """Group names from inclusive upper bounds: (3, 12) -> ['0-3', '4-12', '13+']."""
    names, low = [], 0
    for high in bounds:
        names.append(f"{low}-{high}")
        low = high + 1
    return names + [f"{low}+"]


def ordered_groups(column: str, present: Iterable[str], age_groups: Sequence[str]) -> list[str]:
    """The rows of a grouping (sex, race, age group) that has any labelled face: every known group in
    its natural order (one without a face keeps its row, n = 0; ``age_groups`` are the names), then
    any other label found, sorted."""
    present = set(present)
    if not present:
        return []
    known = {"sex": SEX_CLASSES, "race": RACE_CLASSES, "age_group": tuple(age_groups)}.get(column, ())
    return list(known) + sorted(present - set(known))


def age_group(age: float, bounds: Sequence[int] = DEFAULT_AGE_GROUPS) -> str:
    names = age_group_names(bounds)
    return names[int(np.searchsorted(np.asarray(bounds), age, side="left"))]


def read_labels(index_path: str, bounds: Sequence[int]):
    """sex, race, age and age group per image (a DataFrame, index: image_id); missing labels stay
    missing. pandas and pyarrow are imported here: the Snakefile imports this module."""
    import pandas as pd
    import pyarrow.parquet as pq

    frame = pq.read_table(index_path, columns=["image_id", "sex", "race", "age"]).to_pandas().set_index("image_id")
    frame["age_group"] = [None if pd.isna(a) else age_group(a, bounds) for a in frame["age"]]
    return frame.sort_index()


def is_regression(task: str) -> bool:
    return task == "age"


def task_classes(task: str, bounds: Sequence[int] = DEFAULT_AGE_GROUPS) -> list[str]:
    if task == "sex":
        return list(SEX_CLASSES)
    if task == "race":
        return list(RACE_CLASSES)
    if task == "age_group":
        return age_group_names(bounds)
    raise TaskError(f"task {task!r} has no classes")


def task_target(task: str, sex: Sequence, race: Sequence, age: Sequence,
                bounds: Sequence[int] = DEFAULT_AGE_GROUPS) -> np.ndarray:
    """The target of ``task`` per image: class names (object array) or ages (float)."""
    if task == "sex":
        return np.asarray(sex, dtype=object)
    if task == "race":
        return np.asarray(race, dtype=object)
    if task == "age":
        return np.asarray(age, dtype=np.float64)
    if task == "age_group":
        return np.asarray([age_group(a, bounds) for a in age], dtype=object)
    raise TaskError(f"unknown task {task!r}; known: {list(TASKS)}")
