"""The Raspberry Pi check: check.sh (ARM userlands under QEMU), parity.py, report.py -> PI.md."""
