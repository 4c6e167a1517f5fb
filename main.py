"""Train and evaluate models: `python main.py --model=retinanet --mode=train --model_dir=DIR`.

A thin wrapper over `detection.main_lib` (also installed as the `detection-main` command).
"""

from detection.main_lib import main

if __name__ == "__main__":
    main()
