"""Training: SFT and DPO share the mesh, optimizer, data, checkpoint and run-directory code."""
