"""Data sets: MNIST-1D, CIFAR-10 and the shipped Python-stdlib text corpus, loaded into memory for the trainer."""
