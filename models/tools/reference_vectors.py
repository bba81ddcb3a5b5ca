#!/usr/bin/env python3
"""Development only: writes the scikit-learn reference vectors the Rust parity tests compare to.

For each committed model it reads the model's JSON view (models/<id>.json: preprocessing and
latent variables), applies the same preprocessing in numpy/scipy to the same calibration file
(SNV with ddof 1, scipy.signal.savgol_filter with mode="nearest", the same index selection), fits
sklearn.cross_decomposition.PLSRegression(n_components=LV, scale=False), and computes for a set of
spectra (calibration rows, and perturbed ones outside the domain) the prediction, Hotelling T²
(score variance with ddof 1) and Q. It writes gateway/core/tests/data/pat/<id>.json.

CI does not run this; it uses the committed vectors. To regenerate (from the repository root):

    python3 -m venv build/pat-venv && build/pat-venv/bin/pip install scikit-learn numpy scipy
    build/pat-venv/bin/python models/tools/reference_vectors.py
"""
import gzip, io, json, hashlib, sys
from pathlib import Path

import numpy as np
import scipy
import scipy.signal
import sklearn
from sklearn.cross_decomposition import PLSRegression

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "pat"
OUT = ROOT / "gateway" / "core" / "tests" / "data" / "pat"
MODELS = {"nir-dyrby2002": 16, "raman-dyrby2002": 8, "nir-idrc2002-inst1": 12}


def read_csv(name):
    raw = (DATA / name).read_bytes()
    text = gzip.decompress(raw).decode() if name.endswith(".gz") else raw.decode()
    lines = [l for l in text.splitlines() if l.strip()]
    header = lines[0].split(",")
    first = next(i for i, h in enumerate(header) if _isnum(h))
    axis = np.array([float(h) for h in header[first:]])
    rows = [l.split(",") for l in lines[1:]]
    y = np.array([float(r[0]) for r in rows])
    x = np.array([[float(v) for v in r[first:]] for r in rows])
    return axis, x, y, hashlib.sha256(raw).hexdigest()


def _isnum(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def preprocess(x, steps):
    x = x.copy()
    for step in steps:
        (name, arg), = step.items()
        if name == "snv":
            assert arg["ddof"] == 1
            x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, ddof=1, keepdims=True)
        elif name == "savgol":
            x = scipy.signal.savgol_filter(x, arg["window"], arg["order"], deriv=arg["deriv"], axis=1, mode="nearest")
        elif name == "select":
            x = x[:, arg["start"]:arg["end"]]
        elif name == "centre":
            pass  # PLSRegression centres on the same training mean.
        else:
            raise SystemExit(f"preprocessing step {name} is not mirrored here")
    return x


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for model_id, count in MODELS.items():
        view = json.loads((ROOT / "models" / f"{model_id}.json").read_text())
        axis, x, y, sha = read_csv(view["training"]["source"])
        assert sha == view["training"]["data"], f"{model_id}: calibration data differ from the model's"
        steps, lv = view["preprocessing"], view["latent_variables"]
        xp = preprocess(x, steps)
        pls = PLSRegression(n_components=lv, scale=False).fit(xp, y)
        score_var = pls.transform(xp).var(axis=0, ddof=1)

        picks = np.linspace(0, len(y) - 1, count - 2).round().astype(int)
        spectra = [x[i] for i in picks]
        # Outside the domain: a foreign band, and a one-point axis shift of the intensities.
        # The band sits in the middle of the variables the model uses.
        sel = [st["select"] for st in steps if "select" in st]
        centre = (sel[0]["start"] + sel[0]["end"]) / 2 if sel else x.shape[1] / 3
        band = x[picks[0]] + 0.2 * np.abs(x[picks[0]]).max() * np.exp(-((np.arange(x.shape[1]) - centre) / 4.0) ** 2)
        shifted = np.roll(x[picks[1]], 1)
        shifted[0] = shifted[1]
        spectra += [band, shifted]
        s = np.array(spectra)
        sp = preprocess(s, steps)
        pred = pls.predict(sp).ravel()
        scores = pls.transform(sp)
        t2 = ((scores ** 2) / score_var).sum(axis=1)
        resid = (sp - pls._x_mean) - scores @ pls.x_loadings_.T
        q = (resid ** 2).sum(axis=1)
        out = {
            "model": model_id,
            "latent_variables": lv,
            "preprocessing": steps,
            "generated_by": f"models/tools/reference_vectors.py; scikit-learn {sklearn.__version__}, numpy {np.__version__}, scipy {scipy.__version__}",
            "calibration_sha256": sha,
            "rows": [int(i) for i in picks] + ["foreign-band", "shift-1-point"],
            "spectra": [[float(v) for v in row] for row in s],
            "prediction": [float(v) for v in pred],
            "t2": [float(v) for v in t2],
            "q": [float(v) for v in q],
        }
        (OUT / f"{model_id}.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
        print(f"{model_id}: {len(s)} vectors, LV {lv}")


if __name__ == "__main__":
    sys.exit(main())
