"""lkr's experiments as library functions (the ``lkr`` command runs them).

``fc_vs_cnn``
    Test error of FC, CNN and LCN networks against width and against their infinite-width
    limits, split into bias^2 and variance (:func:`lkr.experiments.fc_vs_cnn.run`).
``nets_vs_linearized``
    Finite-width networks against their linearisations (same GD) and the kernel solution,
    with the effective rank of the Jacobian (``lkr nets-vs-linearized``); D-output nets and
    their NTK in ``multioutput``.
``train_one``
    One network trained by Langevin dynamics (``lkr train``).
"""
