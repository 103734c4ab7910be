"""Send a stage's logging and progress bars to its Snakemake log file."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

from maskbench.errors import UserError, is_user_error

log = logging.getLogger("maskbench")


@contextlib.contextmanager
def log_to(path: str | None) -> Iterator[logging.Logger]:
    """Log to ``path`` (and tqdm's stderr with it); a failure is logged before it propagates."""
    if not path:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        yield log
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        old_stderr = sys.stderr
        sys.stderr = stream
        try:
            check_checkout_library()
            yield log
        except Exception as exc:
            log.error("%s: %s", type(exc).__name__, exc)
            if is_user_error(exc):  # the message is the whole story: one line, no traceback
                print(f"error: {exc}", file=old_stderr)
                raise SystemExit(1) from None
            raise
        finally:
            sys.stderr = old_stderr
            root.removeHandler(handler)


class OtherCheckoutError(UserError):
    """A job imported maskbench from somewhere else than the workflow's checkout."""


def check_checkout_library(package_dir: str | Path | None = None) -> None:
    """Refuse to run a stage with another checkout's library: the workflow records the code of its
    own checkout (MASKBENCH_ROOT, set by the workflow) in the stage's code stamp, so running other
    code would leave outputs that look current but are not. The workflow puts its checkout first
    on PYTHONPATH; a conda env keeps the checkout it was made from instead (Snakemake clears
    PYTHONPATH in conda jobs), which is what this catches. Outside a workflow it checks nothing."""
    root = os.environ.get("MASKBENCH_ROOT")
    if not root:
        return
    here = Path(package_dir or Path(__file__).parent).resolve()
    expected = (Path(root) / "src" / "maskbench").resolve()
    if here != expected:
        raise OtherCheckoutError(
            f"this job imports maskbench from {here}, but the workflow's checkout is {root}: its code "
            "stamps record that checkout's code. A conda environment keeps the checkout it was made "
            "from: remove it (.snakemake/conda, or your --conda-prefix) so it is made again, or give "
            "each checkout its own --conda-prefix"
        )
