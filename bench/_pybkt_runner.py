"""Runs inside bench/.venv-pybkt (pyBKT needs numpy<2): fits pyBKT's default model on a training
CSV, predicts a test CSV, and writes the fitted parameters and predictions as JSON.

    bench/.venv-pybkt/bin/python bench/_pybkt_runner.py TRAIN.csv TEST.csv OUT.json

CSV columns: row, order_id, user_id, skill_name, correct. Called by bench/learner_model.py.
"""

import importlib.util
import json
import sys
import time

import pandas as pd
from pyBKT.models import Model


def main(train_path: str, test_path: str, out_path: str) -> None:
    train, test = pd.read_csv(train_path), pd.read_csv(test_path)
    model = Model(seed=42)                  # the default model: 5 fits, no forgetting
    start = time.perf_counter()
    model.fit(data=train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predicted = model.predict(data=test).sort_values("row")
    predict_seconds = time.perf_counter() - start
    params: dict = {}
    for (skill, name, _), value in model.params()["value"].items():
        params.setdefault(skill, {})[name] = float(value)
    with open(out_path, "w") as out:
        json.dump({"params": params,
                   "compiled": importlib.util.find_spec("pyBKT.fit.E_step") is not None,
                   "fit_seconds": fit_seconds, "predict_seconds": predict_seconds,
                   "rows": predicted["row"].tolist(),
                   "correct_predictions": predicted["correct_predictions"].tolist(),
                   "state_predictions": predicted["state_predictions"].tolist()}, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
