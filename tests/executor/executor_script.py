"""Subprocess driver for the executor tests that need their own TensorFlow process.

    executor_script.py train MODEL_DIR TOTAL_STEPS ITERATIONS_PER_LOOP CHECKPOINT_INTERVAL
    executor_script.py mirrored_vs_one_device OUT_JSON
    executor_script.py multi_worker MODEL_DIR OUT_NPZ        (TF_CONFIG set by the caller)

`train` exits 143 after printing `PREEMPTED: <message>` when stopped by SIGTERM.
"""

import json
import logging
import sys
import tempfile

import executor_fakes as fakes
import numpy as np

from detection import executor
from detection.executor import config as config_lib
from detection.executor import distribution, evaluation, preemption
from detection.executor import trainer as trainer_lib


def _train(model_dir, total_steps, iterations_per_loop, interval):
    strategy = distribution.build_strategy("one_device")
    params = fakes.make_params(
        total_steps=int(total_steps),
        iterations_per_loop=int(iterations_per_loop),
        train={"checkpoint_interval": int(interval)},
    )
    try:
        result = executor.run("train", fakes.FakeModelFn(params), params, model_dir, strategy)
    except preemption.TrainingPreempted as error:
        print(f"PREEMPTED: {error}", flush=True)
        sys.exit(143)
    print("RESULT: " + json.dumps(result), flush=True)


def _mirrored_params():
    # Global batch 4: 2 per replica. Clipping is active, so it must act on the summed gradient.
    params = fakes.make_params(
        total_steps=2, iterations_per_loop=2, train_batch_size=4, eval_batch_size=4
    )
    params.override({"train": {"gradient_clip_norm": 0.05}})
    return params


def _mirrored_vs_one_device(out_json):
    mirrored = distribution.build_strategy("mirrored", num_cores=2)
    import tensorflow as tf  # Only after the logical devices exist.

    one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
    results = {"num_replicas": mirrored.num_replicas_in_sync}
    weights = {}
    for name, strategy in (("mirrored", mirrored), ("one_device", one_device)):
        params = _mirrored_params()
        model_fn = fakes.FakeModelFn(params, sync_bn=name == "mirrored")
        config = config_lib.from_params(params, strategy)
        trainer = trainer_lib.Trainer(model_fn, params, config, tempfile.mkdtemp(), strategy)
        trainer.train(2)
        weights[name] = {v.path: v.numpy() for v in trainer.model.variables}
        results[f"loss_{name}"] = trainer.last_losses["total_loss"]
        metrics = evaluation.Evaluation(strategy, model_fn, trainer.model, 4).run()
        results[f"accuracy_{name}"] = metrics["accuracy"]
        results[f"eval_ids_{name}"] = model_fn.evaluator.source_ids
        results[f"eval_loss_{name}"] = metrics["losses/cls_loss"]
    # Without sync BN each replica normalizes with its own half-batch statistics, so the
    # replica copies of the moving statistics only agree if the executor averages them.
    params = _mirrored_params()
    trainer = trainer_lib.Trainer(
        fakes.FakeModelFn(params, sync_bn=False),
        params,
        config_lib.from_params(params, mirrored),
        tempfile.mkdtemp(),
        mirrored,
    )
    trainer.train(2)
    results["replica_copy_diff"] = {
        v.path: float(
            np.max(
                np.abs(
                    np.subtract(*[c.numpy() for c in mirrored.experimental_local_results(v.value)])
                )
            )
        )
        for v in trainer.model.non_trainable_variables
    }
    results["max_weight_diff"] = {
        k: float(np.max(np.abs(weights["mirrored"][k] - weights["one_device"][k])))
        for k in weights["one_device"]
    }
    with open(out_json, "w") as f:
        json.dump(results, f)


def _multi_worker(model_dir, out_npz):
    strategy = distribution.build_strategy("multi_worker_mirrored")
    params = fakes.make_params(total_steps=4, iterations_per_loop=2, train_batch_size=4)
    model_fn = fakes.FakeModelFn(params, sync_bn=True, num_train_examples=8)
    config = config_lib.from_params(params, strategy)
    trainer = trainer_lib.Trainer(model_fn, params, config, model_dir, strategy)
    trainer.train(4)
    np.savez(out_npz, **{v.path: v.numpy() for v in trainer.model.variables})


def main(argv):
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    command, args = argv[1], argv[2:]
    {
        "train": _train,
        "mirrored_vs_one_device": _mirrored_vs_one_device,
        "multi_worker": _multi_worker,
    }[command](*args)


if __name__ == "__main__":
    main(sys.argv)
