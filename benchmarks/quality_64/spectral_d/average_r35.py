"""Rule 35: the element-wise mean of two checkpoints of one architecture (every floating-point tensor; any other
tensor comes from the first). Usage: average_r35.py A B OUT"""
import sys

from meta_core import checkpoint

a, b = checkpoint.load(sys.argv[1]), checkpoint.load(sys.argv[2])
for net_a, net_b in ((a.G, b.G), (a.D, b.D)):
    sb = net_b.state_dict()
    net_a.load_state_dict({k: (v + sb[k]) / 2 if v.is_floating_point() else v for k, v in net_a.state_dict().items()})
a.provenance = {**a.provenance, "averaged_with": sys.argv[2]}
checkpoint.save(a, sys.argv[3])
print("wrote", sys.argv[3])
