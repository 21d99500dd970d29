"""edgeser.distill: teacher -> pseudo-labels -> Wav2Small student (workstation side)."""
