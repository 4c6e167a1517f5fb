"""Command-line tools (`python -m detection.tools.<tool>`).

While `python -m` locates a tool, `sys.argv[0]` is '-m': this package is then being imported
to run a program, so TensorFlow's C++ start-up lines are kept off stderr here, once for every
tool, before the tool's own imports load TensorFlow (`cli.quiet_tensorflow`; `DETECTION_TF_LOGS=1`
brings them back). Imported as a library, nothing happens.
"""

import sys

if sys.argv[:1] == ["-m"]:
    from detection import cli

    cli.quiet_tensorflow()
