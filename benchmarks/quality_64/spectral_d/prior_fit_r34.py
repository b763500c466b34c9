"""Unadapted fit (stratified halves, seeds 0-2) of each checkpoint on the gate's data and on the bg data:
prior_fit_r49.py with those two folders. Usage: prior_fit_r34.py THREADS CHECKPOINT..."""
import runpy
import sys
from pathlib import Path

sys.argv[2:2] = ["data/dicebear64/train,data/dicebear64_4k_bg/train"]
runpy.run_path(str(Path(__file__).with_name("prior_fit_r49.py")), run_name="__main__")
