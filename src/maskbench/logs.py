"""Send a stage's logging and progress bars to its Snakemake log file."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator

from maskbench.errors import is_user_error

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
