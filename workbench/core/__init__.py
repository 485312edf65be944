"""Infrastructure every stage shares: files written atomically, configs and parameters, output folders,
training checkpoints, the device, processes (torchrun ranks, worker pools) and their threads, the training
recipe's common parts, live plots and figures. It imports nothing else of the workbench."""
