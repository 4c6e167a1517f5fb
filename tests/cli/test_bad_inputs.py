"""Acceptance tests of issue 15: every bad input through the real entry points ends with exit
code 2 and one stderr line naming it, no traceback, nothing overwritten; a model_dir with
checkpoints is never trained from scratch.

Subprocesses are used where the stderr line count matters (TensorFlow's C++ start-up lines,
libjpeg writing to the stderr descriptor); the rest calls `main_lib.run` / the tools' `main`
in this process, where one TensorFlow import serves every case."""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf
import yaml

from detection import main_lib
from detection.tools import create_coco_tfrecord, demo, make_shapes_dataset

ROOT = pathlib.Path(__file__).resolve().parents[2]

TINY = {
    "type": "retinanet",
    "architecture": {"min_level": 3, "max_level": 5, "num_classes": 4, "use_bfloat16": False},
    "resnet": {"resnet_depth": 10},
    "fpn": {"fpn_feat_dims": 8},
    "retinanet_head": {"num_convs": 1, "num_filters": 8},
    "anchor": {"num_scales": 1, "aspect_ratios": [1.0], "anchor_size": 3.0},
    "retinanet_parser": {"output_size": [64, 64], "max_num_instances": 8},
    "train": {
        "train_batch_size": 2,
        "total_steps": 4,
        "iterations_per_loop": 2,
        "jit_compile": False,
        "learning_rate": {"type": "step", "warmup_steps": 0, "init_learning_rate": 0.01},
    },
    "eval": {"eval_batch_size": 2, "use_json_file": False, "eval_timeout": 1},
    "postprocess": {"max_total_size": 10, "pre_nms_num_boxes": 50},
}


def _subprocess(*args, env=None, module=None):
    command = [sys.executable] + (["-m", module] if module else [str(ROOT / "main.py")])
    environment = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    environment.pop("DETECTION_TF_LOGS", None)
    environment.update(env or {})
    return subprocess.Popen(
        command + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=environment,
    )


def _finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _assert_one_line(code, err, prog, *fragments):
    assert code == 2, err[-3000:]
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{prog}: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _digests(directory):
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(pathlib.Path(directory).rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, tiny_shapes):
    config = json.loads(json.dumps(TINY))
    config["train"]["train_file_pattern"] = tiny_shapes["train_file_pattern"]
    config["eval"]["eval_file_pattern"] = tiny_shapes["val_file_pattern"]
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory, tiny_shapes):
    """One TFRecord file per kind of bad data: two good records, the bad one (index 2)."""
    root = tmp_path_factory.mktemp("bad_data")
    source = tf.io.gfile.glob(tiny_shapes["val_file_pattern"])[0]
    good = [r.numpy() for r in tf.data.TFRecordDataset(source).take(2)]
    example = tf.train.Example.FromString(good[0])
    jpeg = example.features.feature["image/encoded"].bytes_list.value[0]

    def edited(edit):
        copy = tf.train.Example()
        copy.CopyFrom(example)
        copy.features.feature["image/source_id"].bytes_list.value[0] = b"777"
        edit(copy.features.feature)
        return copy.SerializeToString()

    def set_bytes(key, value):
        def edit(feature):
            feature[key].bytes_list.ClearField("value")
            feature[key].bytes_list.value.append(value)

        return edit

    records = {
        "not_an_image": edited(set_bytes("image/encoded", b"GIF? no, plain text")),
        "corrupt_jpeg": edited(
            set_bytes("image/encoded", jpeg[:300] + bytes(range(256)) * 3 + jpeg[1068:])
        ),
        "more_labels": edited(lambda f: f["image/object/class/label"].int64_list.value.extend([1])),
        "not_an_example": b"\xff\xd8\xff\xe0 a JPEG file written as a record",
    }
    paths = {}
    for name, record in records.items():
        paths[name] = str(root / f"{name}.tfrecord")
        with tf.io.TFRecordWriter(paths[name]) as writer:
            for r in good + [record]:
                writer.write(r)
    data = bytearray(open(source, "rb").read())
    data[len(data) // 2] ^= 0xFF
    paths["corrupt_file"] = str(root / "corrupt_file.tfrecord")
    open(paths["corrupt_file"], "wb").write(bytes(data))
    paths["empty_file"] = str(root / "empty_file.tfrecord")
    open(paths["empty_file"], "wb").close()
    return paths


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, config_file):
    """A run trained in this process to step 4: ckpt-2 and ckpt-4."""
    model_dir = str(tmp_path_factory.mktemp("trained") / "run")
    assert (
        main_lib.run(["--mode=train", f"--config_file={config_file}", f"--model_dir={model_dir}"])
        == 0
    )
    assert {"ckpt-2.index", "ckpt-4.index", "params.yaml"} <= set(os.listdir(model_dir))
    return model_dir


# ----------------------------------------------------------------------------- configs
CONFIG_CASES = {
    "non_utf8": (b"train:\n  train_file_pattern: caf\xe9\n", [], ["is not UTF-8 text: byte 0xe9"]),
    "deep": (b"architecture:\n  pre_parser: " + b"[" * 500 + b"]" * 500 + b"\n", [], ["nesting"]),
    "duplicate": (
        b"train:\n  total_steps: 5\n  total_steps: 6\n",
        [],
        ["duplicate key 'total_steps'", "line 3"],
    ),
    "nested_list": (b"anchor:\n  aspect_ratios: [[1.0, 2.0]]\n", [], ["'anchor.aspect_ratios'"]),
    "scalar_section": (b"train: 5\n", [], ["wrong type for 'train': was a section"]),
    "item_types": (
        b"",
        ["train.total_steps=3", "train.learning_rate.learning_rate_levels=[a, b]"],
        ["--params_override #2:", "'train.learning_rate.learning_rate_levels'"],
    ),
    "output_size": (
        b"",
        ["retinanet_parser.output_size=[100, 100]"],
        ["retinanet_parser.output_size=[100, 100] is not divisible by 2**architecture.max_level"],
    ),
}


def test_config_errors_are_one_line_before_tensorflow_starts(tmp_path):
    """Each case is a main.py process (no TensorFlow import: they are fast), run together."""
    processes = {}
    for name, (content, overrides, _) in CONFIG_CASES.items():
        path = tmp_path / f"{name}.yaml"
        path.write_bytes(content)
        model_dir = tmp_path / f"run_{name}"
        processes[name] = _subprocess(
            "--model=retinanet",
            "--mode=train",
            f"--model_dir={model_dir}",
            f"--config_file={path}",
            *[f"--params_override={o}" for o in overrides],
        )
    for name, process in processes.items():
        code, out, err = _finish(process)
        line = _assert_one_line(code, err, "main.py", *CONFIG_CASES[name][2])
        assert len(line) < 300 and out == ""
        assert not (tmp_path / f"run_{name}").exists()  # Nothing written.


# -------------------------------------------------------------------------------- data
@pytest.mark.parametrize(
    "mode, bad, fragments",
    [
        ("train", "not_an_image", ["record 2 (source_id 777): image/encoded is not a decodable"]),
        ("train", "corrupt_file", ["corrupt or truncated TFRecord file"]),
        ("train", "empty_file", ["is empty (0 bytes)"]),
        ("eval", "not_an_example", ["record 2: the record is not a tf.Example"]),
        ("eval", "more_labels", ["(source_id 777): the record has 5 class labels but 4 boxes"]),
    ],
)
def test_data_errors_name_the_file_and_record(
    mode, bad, fragments, config_file, bad_data, trained_dir, tmp_path, capsys
):
    if mode == "train":
        model_dir = str(tmp_path / "run")
        override = f"train.train_file_pattern={bad_data[bad]}"
    else:
        model_dir = str(tmp_path / "trained")
        shutil.copytree(trained_dir, model_dir)
        override = f"eval.eval_file_pattern={bad_data[bad]}"
    before = _digests(model_dir) if mode == "eval" else {}
    code = main_lib.run(
        [
            f"--mode={mode}",
            f"--config_file={config_file}",
            f"--model_dir={model_dir}",
            f"--params_override={override}",
        ]
    )
    err = capsys.readouterr().err
    program_lines = [line for line in err.splitlines() if line.startswith("main.py")]
    assert code == 2 and len(program_lines) == 1, err[-3000:]
    assert "Traceback" not in err
    if bad not in ("corrupt_file", "empty_file"):
        assert program_lines[0].startswith(f"main.py: error: {bad_data[bad]}: record 2")
    assert bad_data[bad] in program_lines[0]
    for fragment in fragments:
        assert fragment in program_lines[0], program_lines[0]
    if mode == "eval":
        after = _digests(model_dir)  # New files (eval summaries) may appear; none changes.
        assert {name: after[name] for name in before} == before
    else:
        assert not [n for n in os.listdir(model_dir) if n.startswith("ckpt-")]


def test_a_data_error_is_the_only_stderr_line(config_file, bad_data, tmp_path):
    """A real process: no TensorFlow start-up lines, no libjpeg complaint about the corrupt
    JPEG, the INFO lines on stdout; only the error on stderr."""
    code, out, err = _finish(
        _subprocess(
            "--mode=train",
            f"--config_file={config_file}",
            f"--model_dir={tmp_path / 'run'}",
            f"--params_override=train.train_file_pattern={bad_data['corrupt_jpeg']}",
        )
    )
    _assert_one_line(
        code,
        err,
        "main.py",
        f"{bad_data['corrupt_jpeg']}: record 2 (source_id 777): image/encoded is not a decodable",
    )
    assert "training" in out  # INFO lines go to stdout.


# ------------------------------------------------------------------ model_dir and checkpoints
def test_lost_newest_checkpoint_resumes_from_the_previous_one(trained_dir, config_file, tmp_path):
    """Regression (issue 15, item 1): model_dir/checkpoint names ckpt-4, whose files are gone.
    The run used to start again at step 0 and overwrite ckpt-2, exit 0."""
    model_dir = tmp_path / "run"
    shutil.copytree(trained_dir, model_dir)
    for name in os.listdir(model_dir):
        if name.startswith("ckpt-4."):
            os.remove(model_dir / name)
    ckpt2 = _digests(model_dir)
    ckpt2 = {k: v for k, v in ckpt2.items() if k.startswith("ckpt-2.")}
    code, out, err = _finish(
        _subprocess("--mode=train", f"--config_file={config_file}", f"--model_dir={model_dir}")
    )
    assert code == 0, err[-3000:]
    assert "INFO:detection.executor.checkpoints:resumed from ckpt-2 at step 2" in out
    assert f"cannot resume from {model_dir}/ckpt-4: ckpt-4.index is missing" in err
    digests = _digests(model_dir)
    assert {k: digests[k] for k in ckpt2} == ckpt2
    assert [line.split(" |")[0] for line in out.splitlines() if line.startswith("step ")] == [
        "step 4/4"
    ]
    reader = tf.train.load_checkpoint(str(model_dir / "ckpt-4"))
    (key,) = [k for k in reader.get_variable_to_shape_map() if k.startswith("optimizer/_iter")]
    assert reader.get_tensor(key) == 4


@pytest.mark.parametrize("case", ["all_unreadable", "other_architecture", "damaged_state_file"])
def test_unusable_checkpoints_stop_the_run_and_change_nothing(
    case, trained_dir, config_file, tmp_path, capsys
):
    model_dir = tmp_path / "run"
    shutil.copytree(trained_dir, model_dir)
    overrides = []
    if case == "all_unreadable":
        for step in (2, 4):
            path = model_dir / f"ckpt-{step}.data-00000-of-00001"
            path.write_bytes(path.read_bytes()[:100])
        expected = f"{model_dir} holds checkpoints but none can be restored"
    elif case == "other_architecture":
        overrides = ["--params_override=architecture.num_classes=5"]
        expected = f"cannot resume from {model_dir}/ckpt-4: it does not match this model"
    else:
        (model_dir / "checkpoint").write_text("model_checkpoint_path: ckpt-4\n")
        expected = f"{model_dir}/checkpoint line 1: model_checkpoint_path is not a quoted path"
    before = _digests(model_dir)
    code = main_lib.run(
        ["--mode=train", f"--config_file={config_file}", f"--model_dir={model_dir}", *overrides]
    )
    err = capsys.readouterr().err
    program_lines = [line for line in err.splitlines() if line.startswith("main.py")]
    assert code == 2 and len(program_lines) == 1, err[-3000:]
    assert program_lines[0].startswith(f"main.py: error: {expected}"), program_lines[0]
    assert _digests(model_dir) == before  # params.yaml included.


# ------------------------------------------------------------------------------- tools
def _coco(tiny_shapes, tmp_path, edit=None):
    with open(tiny_shapes["val_annotations"]) as f:
        data = json.load(f)
    if edit:
        edit(data)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return str(path)


def _set(key, value, entry="annotations"):
    return lambda data: data[entry][0].__setitem__(key, value)


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("invalid_json", "is not valid JSON: Expecting"),
        ("missing_image_dir", "--image_dir="),
        ("missing_image", "Image file not found:"),
        ("bad_bbox", "has a malformed bbox [1, 2]"),
        ("unknown_category", "has category id 99 not in categories"),
        ("unwritable_output", "cannot write"),
        ("missing_flag", "the following arguments are required: --object_annotations_file"),
        ("too_many_shards", "num_shards=100"),
    ],
)
def test_create_coco_tfrecord_errors(case, fragment, tiny_shapes, tmp_path, capsys):
    image_dir = tiny_shapes["val_image_dir"]
    annotations = _coco(tiny_shapes, tmp_path)
    prefix = str(tmp_path / "out" / "val")
    extra = []
    if case == "invalid_json":
        (tmp_path / "instances.json").write_text('{"images": [')
    elif case == "missing_image_dir":
        image_dir = str(tmp_path / "no_images")
    elif case == "missing_image":
        annotations = _coco(tiny_shapes, tmp_path, _set("file_name", "gone.jpg", "images"))
    elif case == "bad_bbox":
        annotations = _coco(tiny_shapes, tmp_path, _set("bbox", [1, 2]))
    elif case == "unknown_category":
        annotations = _coco(tiny_shapes, tmp_path, _set("category_id", 99))
    elif case == "unwritable_output":
        (tmp_path / "a_file").write_text("")
        prefix = str(tmp_path / "a_file" / "val")
    elif case == "too_many_shards":
        extra = ["--num_shards=100"]  # The last one wins.
    argv = [
        f"--image_dir={image_dir}",
        f"--object_annotations_file={annotations}",
        f"--output_file_prefix={prefix}",
        "--num_shards=2",
        *extra,
    ]
    if case == "missing_flag":
        argv = argv[:1] + argv[2:]
    code = create_coco_tfrecord.main(argv)
    captured = capsys.readouterr()
    _assert_one_line(code, captured.err, "create_coco_tfrecord", fragment)
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


@pytest.mark.parametrize(
    "main, argv, fragment",
    [
        (make_shapes_dataset.main, ["--out_dir=X", "--num_train=-5"], "num_train must be"),
        (make_shapes_dataset.main, ["--out_dir=X", "--image_size=0"], "image_size must be"),
        (make_shapes_dataset.main, ["--num_val=3"], "required: --out_dir"),
        (demo.main, ["--num_images=0"], "--num_images must be >= 1"),
        (demo.main, ["--min_score=1.5"], "--min_score must be in [0, 1]"),
        (demo.main, ["--params_override={train: "], "--params_override: invalid YAML"),
        (demo.main, ["--model_dirr=x"], "unrecognized arguments: --model_dirr"),
        (demo.main, ["--model=shapemask", "--num_clusters=0"], "--num_clusters must be >= 1"),
        (demo.main, ["--config_file=nope.yaml"], "--config_file=nope.yaml: no such file"),
    ],
)
def test_shapes_and_demo_flag_errors(main, argv, fragment, tmp_path, capsys):
    argv = [a.replace("=X", f"={tmp_path / 'shapes'}") for a in argv]
    code = main(argv + [f"--data_dir={tmp_path / 'data'}"] if main is demo.main else argv)
    prog = "demo" if main is demo.main else "make_shapes_dataset"
    _assert_one_line(code, capsys.readouterr().err, prog, fragment)
    assert not (tmp_path / "shapes").exists() and not (tmp_path / "data").exists()


def test_tool_process_prints_one_line_and_tf_logs_come_back_on_request(tmp_path):
    """The command as users run it: TensorFlow imported quietly, one line; with
    DETECTION_TF_LOGS=1 its start-up lines are back."""
    (tmp_path / "bad.json").write_text("{")
    args = [
        f"--image_dir={tmp_path}",
        f"--object_annotations_file={tmp_path / 'bad.json'}",
        f"--output_file_prefix={tmp_path / 'out'}",
    ]
    module = "detection.tools.create_coco_tfrecord"
    quiet = _subprocess(*args, module=module)
    loud = _subprocess(*args, module=module, env={"DETECTION_TF_LOGS": "1"})
    code, out, err = _finish(quiet)
    _assert_one_line(code, err, "create_coco_tfrecord", f"{tmp_path / 'bad.json'} is not valid")
    code, out, err = _finish(loud)
    assert code == 2 and len(err.splitlines()) > 1
    assert err.splitlines()[-1].startswith("create_coco_tfrecord: error: ")
