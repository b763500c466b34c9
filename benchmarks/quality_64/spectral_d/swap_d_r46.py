"""Rule 46: one checkpoint's generator with another's discriminator (same architecture). The result keeps the
generator file's configs, adaptation defaults and provenance, and records where its D came from.
Usage: swap_d_r46.py G_FILE D_FILE OUT"""
import sys

from meta_core import checkpoint

g_file, d_file, out = sys.argv[1:4]
model, donor = checkpoint.load(g_file), checkpoint.load(d_file)
if model.config.discriminator != donor.config.discriminator:
    sys.exit(f"{d_file}'s discriminator differs from {g_file}'s in its config; the swap needs one architecture")
model.D.load_state_dict(donor.D.state_dict())
model.provenance = {**model.provenance, "discriminator_from": d_file}
checkpoint.save(model, out)
print("wrote", out)
