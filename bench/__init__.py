"""The benchmark harness behind `cvae bench`: timers, tables, data readers, a fresh-process runner.

Apart from the library: vae_core keeps what a user calls (the NLL estimator is vae_core.likelihood),
this package measures it. harness.py: train, decode, render, restyle, quality, curve and nll;
samples.py: what a model generates (FID, KID, precision/recall, style accuracy, restyle);
runner.py: the cost of running a job as a workflow.
"""
