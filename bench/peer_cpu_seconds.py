"""Runs the Model Garden peer harness with its clock reading CPU seconds instead of wall seconds.

    ~/.venvs/model-garden/bin/python bench/peer_cpu_seconds.py \
        ../shared/peers/modelgarden_bench.py --data 'data/shapes/tfrecords/train-*' \
        --size 384 --batch 2 --models maskrcnn --xla 0

On a shared 2-core machine a wall second mostly measures the wait for a core. The harness is
run unchanged (its own file, its own virtualenv) except that `time.perf_counter`, its only
clock, returns the CPU seconds of the process (all threads), which is what `bench/train_step.py`
reports as "median CPU s": the two are then compared like for like.
"""

import runpy
import sys
import time

if __name__ == "__main__":
    time.perf_counter = time.process_time
    harness, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(harness, run_name="__main__")
