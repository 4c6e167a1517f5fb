"""Whether the devices a run computes on have native bfloat16 arithmetic.

`architecture.use_bfloat16: true` asks for mixed bfloat16 (bfloat16 activations
and matmuls, float32 variables and losses). It pays where the hardware
multiplies bfloat16 natively: TPUs; x86 CPUs with AVX512-BF16 or AMX-BF16 (the
oneDNN kernels TensorFlow ships use them: about 1.6x the float32 step here);
NVIDIA GPUs of compute capability 8.0 (Ampere) and later. Elsewhere bfloat16 is
emulated and slower than float32, so the run computes in float32 and says why.
"""

import platform

import tensorflow as tf

# /proc/cpuinfo flags of the x86 extensions with native bfloat16 dot products.
CPU_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
GPU_MIN_COMPUTE_CAPABILITY = (8, 0)


def parse_cpu_flags(cpuinfo):
    """The set of CPU feature flags in the text of a Linux /proc/cpuinfo."""
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return flags


def host_cpu_flags(cpuinfo_path="/proc/cpuinfo"):
    """This host's CPU flags; empty where /proc/cpuinfo does not exist (macOS, Windows)."""
    if platform.system() != "Linux":
        return set()
    try:
        with open(cpuinfo_path) as f:
            return parse_cpu_flags(f.read())
    except OSError:
        return set()


def cpu_bfloat16_reason(flags):
    """(native, reason) for a CPU with feature `flags`."""
    present = [flag for flag in CPU_BFLOAT16_FLAGS if flag in flags]
    if present:
        return True, f"the CPU has {' and '.join(present)}"
    return False, f"the CPU has none of {', '.join(CPU_BFLOAT16_FLAGS)}"


def gpu_bfloat16_reason(compute_capabilities):
    """(native, reason) for GPUs with these (major, minor) compute capabilities."""
    old = [cc for cc in compute_capabilities if tuple(cc) < GPU_MIN_COMPUTE_CAPABILITY]
    if old:
        major, minor = GPU_MIN_COMPUTE_CAPABILITY
        return False, f"a GPU has compute capability {old[0]} < {major}.{minor}"
    return True, "every GPU has compute capability >= 8.0"


def native_bfloat16(strategy, cpu_flags=None):
    """(native, reason): does `strategy` compute on devices with native bfloat16?

    Args:
      strategy: the run's `tf.distribute.Strategy`.
      cpu_flags: the CPU's feature flags (default: read from this host).

    Returns:
      A bool and a phrase saying why, for the log.
    """
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return True, "the devices are TPUs"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capabilities = [
            tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
            for gpu in gpus
        ]
        return gpu_bfloat16_reason(capabilities)
    return cpu_bfloat16_reason(host_cpu_flags() if cpu_flags is None else cpu_flags)
