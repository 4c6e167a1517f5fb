"""Parameters kept for compatibility that have no effect in TensorFlow 2.

Old YAML files and override strings set these; they still load, and setting one logs a
warning that says why it does nothing here.
"""

INERT_KEYS = {
    "isolate_session_state": "a TF1 session option; TF2 has no sessions",
    "use_tpu": "the distribution strategy is chosen by --strategy_type / --tpu",
    "enable_summary": "TensorBoard summaries are always written under model_dir",
    "train.transpose_input": "TPUEstimator's host-side input transpose; tf.distribute feeds "
    "NHWC batches directly",
    "train.space_to_depth_block_size": "the TPUEstimator space-to-depth input rewrite is not "
    "used; XLA lays out the stem convolution",
    "architecture.space_to_depth_block_size": "the space-to-depth stem rewrite is not used; "
    "XLA lays out the stem convolution",
    "postprocess.use_batched_nms": "one static-shape NMS implementation serves every model",
    "rpn_head.cast_to_float32": "the RPN outputs are always cast to float32 before the "
    "proposals are decoded (what true asked for); bfloat16 proposal decoding is not offered",
    "postprocess.nms_version": "one static-shape NMS implementation serves every model",
    "roi_proposal.use_batched_nms": "one static-shape NMS implementation serves every model",
}

# Meaningful in the original, not implemented here: setting them to a non-null value is an
# error rather than a silent no-op, because results would differ from what was asked.
UNSUPPORTED_KEYS = {
    "train.num_cores_per_replica": "spatial partitioning (model parallelism) is not supported",
    "train.input_partition_dims": "spatial partitioning (model parallelism) is not supported",
}


def _leaf_paths(tree, prefix=""):
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        yield path
        if isinstance(value, dict):
            yield from _leaf_paths(value, path)


def inert_keys_set_by(override):
    """Returns [(dotted_key, reason)] for inert keys an override dict sets."""
    return [(path, INERT_KEYS[path]) for path in _leaf_paths(override) if path in INERT_KEYS]


def unsupported_keys_set_by(override):
    """Returns [(dotted_key, value, reason)] for unsupported keys set to non-null values."""
    found = []
    for path in _leaf_paths(override):
        if path in UNSUPPORTED_KEYS:
            node = override
            for part in path.split("."):
                node = node[part]
            if node is not None:
                found.append((path, node, UNSUPPORTED_KEYS[path]))
    return found
