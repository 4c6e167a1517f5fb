"""A serving client that imports only TensorFlow and NumPy (run as a subprocess by the tests).

    python serving_client.py requests.json results.npz

`requests.json` is a list of `{"name", "saved_model_dir", "inputs"}` where `inputs` is the
path of an .npy file (a tensor) or a list of file paths (a string tensor of their bytes); each
SavedModel's `serving_default` is called with `input=` that tensor, and every output is
saved as `<name>/<output>` in results.npz. A request whose call raises saves the error's type
and message as `<name>/error`. The client fails if anything imported the `detection` package.
"""

import json
import sys

import numpy as np
import tensorflow as tf


def main(requests_file, results_file):
    with open(requests_file, encoding="utf-8") as f:
        requests = json.load(f)
    results = {}
    models = {}
    for request in requests:
        path = request["saved_model_dir"]
        if path not in models:
            models[path] = tf.saved_model.load(path).signatures["serving_default"]
        if isinstance(request["inputs"], list):
            inputs = [open(name, "rb").read() for name in request["inputs"]]
        else:
            inputs = np.load(request["inputs"], allow_pickle=False)
        try:
            outputs = models[path](input=tf.constant(inputs))
        except tf.errors.OpError as error:
            results[f"{request['name']}/error"] = np.array(
                f"{type(error).__name__}: {error.message}"
            )
            continue
        for key, value in outputs.items():
            results[f"{request['name']}/{key}"] = value.numpy()
    imported = sorted(m for m in sys.modules if m == "detection" or m.startswith("detection."))
    if imported:
        raise SystemExit(f"the client imported {imported}")
    np.savez(results_file, **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
