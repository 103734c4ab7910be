"""Time every verification metric on 10^7 scores on one core, against a naive threshold grid.

Scores are synthetic (genuine N(2.5, 1), impostor N(0, 1), float64, essentially no ties): the
metrics' cost depends on the counts, not on the values. Times are CPU seconds of this process
(wall seconds beside them), pinned to one core. Each metric is timed on unsorted input
(it sorts for itself) and on pre-sorted input (the caller sorts once). The naive baseline counts
FMR and FNMR by comparison over all scores at each of ``--grid`` evenly spaced thresholds; only
``--grid-timed`` of them are run and the time is scaled up, which the output says. A first
error_rates call warms the allocator up and is reported apart.
``--stage N`` instead times the metrics stage (``compute_metrics``: reading, every metric, NIST's
masked-probe rates against a baseline file, the cross-validated operating point) on a score file of
N impostor and N/100 genuine pairs in 5 folds, as the LFW test pairs give, and the classification
report of the operating point both ways (sklearn on every decision vs from the four counts).
Usage: python benchmarks/bench_metrics.py [--genuine 1000000] [--impostor 9000000] [--stage 7800000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from maskbench.evaluation import metrics


def one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def timed(label: str, fn, rows: list) -> object:
    """Run ``fn``; record its CPU seconds (steady on a shared machine) and print wall seconds too."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rows.append((label, cpu))
    print(f"  {label:38s} {cpu:8.3f} {seconds:8.3f}", flush=True)
    return out


def naive_grid(gen: np.ndarray, imp: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fmr = np.array([np.count_nonzero(imp >= t) / imp.size for t in thresholds])
    fnmr = np.array([np.count_nonzero(gen < t) / gen.size for t in thresholds])
    return fmr, fnmr


def run_all(gen: np.ndarray, imp: np.ndarray, masked_gen: np.ndarray, masked_imp: np.ndarray,
            n_boot: int) -> list:
    rows: list = []
    timed("error_rates", lambda: metrics.error_rates(gen, imp), rows)
    timed("eer", lambda: metrics.eer(gen, imp), rows)
    timed("eer_convex_hull", lambda: metrics.eer_convex_hull(gen, imp), rows)
    timed("fnmr_at_fmr_many (5 targets)",
          lambda: metrics.fnmr_at_fmr_many(gen, imp, (1e-2, 1e-3, 1e-4, 1e-5, 0.0)), rows)
    timed("roc_auc", lambda: metrics.roc_auc(gen, imp), rows)
    timed("d_prime", lambda: metrics.d_prime(gen, imp), rows)
    timed("best_accuracy", lambda: metrics.best_accuracy(gen, imp), rows)
    timed("histogram_overlap", lambda: metrics.histogram_overlap(gen, imp), rows)
    timed("det_curve (2000 points)", lambda: metrics.det_curve(gen, imp), rows)
    timed("fixed_threshold_rates", lambda: metrics.fixed_threshold_rates(gen, imp, 1.0), rows)
    timed("nist_masked_probe", lambda: metrics.nist_masked_probe(imp, masked_gen, masked_imp, 1e-4), rows)
    scores = np.concatenate((gen, imp))
    labels = np.concatenate((np.ones(gen.size, bool), np.zeros(imp.size, bool)))
    folds = np.random.default_rng(1).integers(0, 10, scores.size)
    timed("kfold_accuracy (10 folds)", lambda: metrics.kfold_accuracy(scores, labels, folds), rows)
    timed(f"bootstrap_ci of EER ({n_boot} resamples)",
          lambda: metrics.bootstrap_ci(gen, imp, lambda g, i: metrics.eer(g, i).eer, n_boot=n_boot), rows)
    return rows


def stage(n_impostor: int, n_boot: int) -> None:
    """CPU seconds of the metrics stage on synthetic score files (see the module docstring)."""
    import tempfile

    import pyarrow as pa
    from sklearn.metrics import classification_report

    from maskbench.evaluation.operating_point import CLASS_NAMES, _confusion, _report
    from maskbench.io.atomic import write_table
    from maskbench.io.manifests import SCORES_SCHEMA
    from maskbench.stages.metrics import compute_metrics

    def scores_file(path, shift, seed):
        rng = np.random.default_rng(seed)
        n = n_impostor + n_impostor // 100
        genuine = np.arange(n) < n_impostor // 100
        score = np.round(np.where(genuine, rng.normal(shift, 1, n), rng.normal(0, 1, n)), 5)
        status = np.full(n, "ok", dtype=object)
        status[rng.choice(n, 200, replace=False)] = "missing_embedding"
        ok = status == "ok"
        write_table(path, pa.Table.from_pydict(
            {"pair_id": np.arange(n), "ref_image": pa.array(["r"] * n), "probe_image": pa.array(["p"] * n),
             "genuine": genuine, "fold": rng.integers(-1, 5, n).astype(np.int16),
             "score": pa.array(np.where(ok, score, 0.0), mask=~ok), "status": status.tolist()},
            schema=SCORES_SCHEMA))

    with tempfile.TemporaryDirectory() as tmp:
        masked, base = f"{tmp}/masked.parquet", f"{tmp}/base.parquet"
        scores_file(masked, 1.5, 1)
        scores_file(base, 2.5, 2)
        print(f"metrics stage on {n_impostor:,} impostor + {n_impostor // 100:,} genuine pairs, 5 folds, "
              f"a baseline file, bootstrap {n_boot}; CPU seconds")
        rows: list = []
        timed("compute_metrics", lambda: compute_metrics(masked, base, {"bootstrap": n_boot}), rows)
    rng = np.random.default_rng(3)
    y, pred = rng.random(n_impostor) < 0.01, rng.random(n_impostor) < 0.02
    timed("classification report: sklearn on decisions", lambda: classification_report(
        y, pred, labels=[False, True], target_names=list(CLASS_NAMES), output_dict=True, zero_division=np.nan), rows)
    timed("classification report: from the counts", lambda: _report(_confusion(y, pred)), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage", type=int, default=0, help="time the metrics stage on this many impostor pairs")
    parser.add_argument("--genuine", type=int, default=1_000_000)
    parser.add_argument("--impostor", type=int, default=9_000_000)
    parser.add_argument("--grid", type=int, default=1000, help="thresholds of the naive baseline")
    parser.add_argument("--grid-timed", type=int, default=100, help="grid thresholds actually run")
    parser.add_argument("--n-boot", type=int, default=5, help="bootstrap resamples timed")
    args = parser.parse_args()
    one_core()
    if args.stage:
        stage(args.stage, args.n_boot)
        return
    rng = np.random.default_rng(0)
    gen = rng.normal(2.5, 1.0, args.genuine)
    imp = rng.normal(0.0, 1.0, args.impostor)
    masked_gen = gen - 0.8
    masked_imp = imp + 0.2
    print(f"{gen.size:,} genuine + {imp.size:,} impostor scores, one core")

    start = time.process_time()
    metrics.error_rates(gen, imp)
    print(f"warm-up: first error_rates call {time.process_time() - start:.3f} CPU s "
          "(includes the process's first touch of ~1 GB of fresh memory; not counted below)")

    print(f"  {'seconds:':38s} {'CPU':>8s} {'wall':>8s}")
    print("unsorted input (each metric sorts for itself):")
    rows = run_all(gen, imp, masked_gen, masked_imp, args.n_boot)
    total = sum(s for _, s in rows)
    print(f"  {'total':38s} {total:8.3f}")

    print("pre-sorted input (sort once, reuse):")
    sorted_arrays: list = []
    timed("np.sort of the four arrays",
          lambda: sorted_arrays.extend(np.sort(a) for a in (gen, imp, masked_gen, masked_imp)), rows_sort := [])
    gen_s, imp_s, mgen_s, mimp_s = sorted_arrays
    rows_s = run_all(gen_s, imp_s, mgen_s, mimp_s, args.n_boot)
    print(f"  {'total (with the sort)':38s} {rows_sort[0][1] + sum(s for _, s in rows_s):8.3f}")

    boot = dict(rows)[f"bootstrap_ci of EER ({args.n_boot} resamples)"]
    print(f"bootstrap: {boot / args.n_boot:.3f} CPU s per resample, "
          f"so n_boot=1000 would take about {1000 * boot / args.n_boot:.0f} s (extrapolated)")

    lo = min(gen.min(), imp.min())
    hi = max(gen.max(), imp.max())
    grid = np.linspace(lo, hi, args.grid)
    run = grid[::max(1, args.grid // args.grid_timed)]
    start = time.process_time()
    naive_grid(gen, imp, run)
    seconds = time.process_time() - start
    print(f"naive grid: {run.size} of {args.grid} thresholds timed, {seconds:.3f} CPU s; "
          f"all {args.grid} would take about {seconds * args.grid / run.size:.1f} s (extrapolated)")
    exact = metrics.eer(gen_s, imp_s)
    near = grid[np.argsort(np.abs(grid - exact.threshold))[:4]]  # where a grid search would end
    fmr, fnmr = naive_grid(gen, imp, near)
    j = int(np.argmin(np.abs(fmr - fnmr)))
    print(f"EER: exact {exact.eer:.6f} at {exact.threshold:.6f} (|FMR-FNMR| "
          f"{abs(exact.fmr - exact.fnmr):.2e}); {args.grid}-point grid {(fmr[j] + fnmr[j]) / 2:.6f} "
          f"at {near[j]:.6f} (|FMR-FNMR| {abs(fmr[j] - fnmr[j]):.2e})")

if __name__ == "__main__":
    main()
