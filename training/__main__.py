"""`python -m training`: a DPO round headless (services/headless.py; `--help` lists every flag).

    python -m training --fresh --epochs 3 --beta 0.2

Only the command's name lives here: its code composes the store, the runner and the serving policy, so it sits
above them, in services/. A round's own process is `python -m training.child`, which imports nothing above
training/.
"""

import sys

from services.headless import build_parser, main

if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
