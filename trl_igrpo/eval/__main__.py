"""``python -m trl_igrpo.eval`` is ``trl-igrpo eval`` (:mod:`trl_igrpo.eval.cli`)."""

import sys

from trl_igrpo.eval.cli import main

if __name__ == "__main__":
    sys.exit(main())
