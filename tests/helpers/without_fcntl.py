"""train.py on a system without fcntl (as Windows): python tests/helpers/without_fcntl.py LOCK_FILE

Imports train (and so every module a run imports at start-up) with fcntl made unimportable, then takes the
run folder's kind of lock on LOCK_FILE and tries a second one, which must be refused."""
import pathlib
import sys
import warnings

sys.modules["fcntl"] = None  # `import fcntl` now raises ImportError
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
warnings.simplefilter("ignore")  # filelock says it falls back to its portable lock
import train  # noqa: E402,F401
from infra.run_folder import FileLock, Timeout  # noqa: E402

held = FileLock(sys.argv[1], timeout=0)
held.acquire()
try:
    FileLock(sys.argv[1], timeout=0).acquire()
    print("a second lock taken")
except Timeout:
    print("locked; a second lock refused")
