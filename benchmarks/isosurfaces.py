"""Iso-surfaces: extraction time of the torch marching cubes against scikit-image's, the
MeshSDF and marching gradient errors against the exact shape derivative, and the fit quality
and time per extraction.

1. Marching cubes of the same sphere sampled at 32^3, 64^3 and 128^3: the median of 3 runs of
   `workbench.surfaces.marching.marching_cubes` (float64, vertices differentiable in the
   values) and of `skimage.measure.marching_cubes` (Lewiner, float32 output), and the
   triangle counts of both.
2. The study's gradient errors (largest error of the surface velocity against the exact shape
   derivative, relative, ellipse radii) at every resolution, with the fitted orders.
3. Per extraction, the study's best fit (lowest final Chamfer over the learning rates) per
   target and resolution: final Chamfer, Hausdorff, seconds.

scikit-image is a test and benchmark peer only: it is imported here, never by the package.

Run: python benchmarks/isosurfaces.py [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd

from workbench.claims import readable
from workbench.surfaces import findings, study
from workbench.surfaces.fields import Ball
from workbench.surfaces.grid import Grid
from workbench.surfaces.marching import marching_cubes

RESOLUTIONS = (32, 64, 128)


def _median_seconds(function, *args, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def extraction_table() -> pd.DataFrame:
    from skimage.measure import marching_cubes as skimage_marching_cubes

    rows = {}
    for n in RESOLUTIONS:
        grid = Grid(3, n)
        values = grid.sample(Ball([0.04, -0.03, 0.02], 0.6)).detach()
        array = values.numpy()
        ours = marching_cubes(values, grid)
        _, theirs, _, _ = skimage_marching_cubes(array, 0.0)
        rows[f"{n}^3"] = {
            "torch s": _median_seconds(marching_cubes, values, grid),
            "scikit-image s": _median_seconds(skimage_marching_cubes, array, 0.0),
            "torch triangles": ours.n_faces,
            "scikit-image triangles": len(theirs),
        }
    table = pd.DataFrame(rows).T
    table["torch / scikit-image"] = table["torch s"] / table["scikit-image s"]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="notebook 07's SMOKE size")
    args = parser.parse_args()
    print(extraction_table().to_string(float_format=readable))
    errors = study.gradient_errors(args.smoke)
    orders = study.gradient_orders(errors)
    table = errors.pivot(index="resolution", columns="method", values="error")
    print("\nlargest surface-velocity error / largest velocity (ellipse radii):")
    print(table.to_string(float_format=readable))
    print("fitted orders: " + ", ".join(f"{m} {o:.2f}" for m, o in orders.items()))
    runs = study.fit_runs(study.offered_settings(args.smoke), args.smoke)
    fits = findings.sensitivity_table(runs)
    best = findings.best_fits(fits)
    seconds = fits.set_index(["target", "resolution", "extractor", "log2_lr"]).seconds
    best["seconds"] = [seconds[(*key, int(row.log2_lr))] for key, row in best.iterrows()]
    print("\nbest fit per extraction (lowest final Chamfer over the learning rates):")
    print(best.drop(columns="label").to_string(float_format=readable))


if __name__ == "__main__":
    main()
