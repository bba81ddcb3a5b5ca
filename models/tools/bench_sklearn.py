#!/usr/bin/env python3
"""Development only: times scikit-learn on the same models and spectra as the Rust bench
(`cargo bench -p dosegate-core --bench pat`), one spectrum at a time.

`predict` is PLSRegression.predict alone on an already preprocessed spectrum; `pipeline` is the
whole per-spectrum path the gateway runs: numpy/scipy preprocessing, predict, T² and Q.
Prints `BENCH <model> sklearn-predict|sklearn-pipeline median_us=… p99_us=…`.
"""
import json, time
import numpy as np
from sklearn.cross_decomposition import PLSRegression

import reference_vectors as rv


def measure(f, reps=2000):
    for _ in range(200):
        f()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        t.append((time.perf_counter() - t0) * 1e6)
    t.sort()
    return t[len(t) // 2], t[int(len(t) * 0.99)]


def groups_of(name, column):
    raw = (rv.DATA / name).read_bytes()
    text = rv.gzip.decompress(raw).decode() if name.endswith(".gz") else raw.decode()
    lines = [l for l in text.splitlines() if l.strip()]
    i = lines[0].split(",").index(column)
    return np.array([l.split(",")[i] for l in lines[1:]])


def cv_rmse(xp, y, lv, folds):
    pred = np.empty_like(y)
    for f in np.unique(folds):
        test = folds == f
        m = PLSRegression(n_components=lv, scale=False).fit(xp[~test], y[~test])
        pred[test] = m.predict(xp[test]).ravel()
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def main():
    for model_id in rv.MODELS:
        view = json.loads((rv.ROOT / "models" / f"{model_id}.json").read_text())
        axis, x, y, _ = rv.read_csv(view["training"]["source"])
        steps, lv = view["preprocessing"], view["latent_variables"]
        xp = rv.preprocess(x, steps)
        pls = PLSRegression(n_components=lv, scale=False).fit(xp, y)
        var = pls.transform(xp).var(axis=0, ddof=1)
        group_by = view["training"]["group_by"]
        folds = groups_of(view["training"]["source"], group_by) if group_by else np.arange(len(y)) % view["training"]["folds"]
        kind = f"leave-{group_by}-out" if group_by else f"{view['training']['folds']}-fold"
        print(f"ACCURACY {model_id} sklearn rmsecv_{kind}={cv_rmse(xp, y, lv, folds):.4f} lv={lv}")
        one_raw = x[:1]
        one = xp[:1]
        m, p = measure(lambda: pls.predict(one))
        print(f"BENCH {model_id} sklearn-predict median_us={m:.2f} p99_us={p:.2f}")

        def pipeline():
            s = rv.preprocess(one_raw, steps)
            pred = pls.predict(s)
            t = pls.transform(s)
            t2 = ((t ** 2) / var).sum(axis=1)
            q = (((s - pls._x_mean) - t @ pls.x_loadings_.T) ** 2).sum(axis=1)
            return pred, t2, q

        m, p = measure(pipeline)
        print(f"BENCH {model_id} sklearn-pipeline median_us={m:.2f} p99_us={p:.2f}")


if __name__ == "__main__":
    main()
