"""`python -m collabkit.cli` (what `torchrun -m collabkit.cli train ...` runs)."""

from collabkit.cli import main

main()
