"""Training the branch networks: data, the per-branch trainer, and the per-class orchestration."""
