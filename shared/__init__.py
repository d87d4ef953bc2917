"""The code every function shares: domain, job store, queue, storage, workflow, generation."""
