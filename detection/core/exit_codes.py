"""Process exit codes of `main.py` and every tool.

0 done; 2 bad input (flags, params, data files: one line on stderr names it); 3 the training
diverged (NaN/Inf loss, the message names the step); 143 preempted by SIGTERM after saving a
checkpoint (the conventional 128 + SIGTERM, so job schedulers restart the job, which then
resumes). 1 is left to Python itself: an uncaught exception is a bug, and its traceback is what
to report.
"""

OK = 0
USAGE = 2
DIVERGED = 3
PREEMPTED = 143
