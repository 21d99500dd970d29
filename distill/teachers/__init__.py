"""Teachers: batch of 16 kHz waveforms -> [batch, 3] A/D/V (and optionally an embedding)."""
