"""Published test log-likelihoods to print beside ours (nats per example, NLL = -log p).

Each entry states the data set, its binarization and how the number was estimated, since
numbers on differently binarized MNIST are not comparable.
"""

from __future__ import annotations

#: Burda, Grosse & Salakhutdinov (2015), "Importance Weighted Autoencoders", Table 1, MNIST.
#: Test NLL estimated with k = 5000 importance samples; models trained for 3,280 epochs
#: (batch 20, Adam, learning rate 1e-3 * 10^(-i/7) for 3^i epochs, i = 0..7). The paper
#: trains on MNIST binarized stochastically (re-sampled each minibatch, i.e. dynamic
#: binarization), not on the fixed Larochelle & Murray binarization.
BURDA_2015_MNIST = {
    # (stochastic layers, objective, k): NLL
    (1, "vae", 1): 86.76,
    (1, "vae", 5): 86.47,
    (1, "vae", 50): 86.35,
    (1, "iwae", 1): 86.76,
    (1, "iwae", 5): 85.54,
    (1, "iwae", 50): 84.78,
    (2, "vae", 1): 85.33,
    (2, "vae", 5): 85.01,
    (2, "vae", 50): 84.78,
    (2, "iwae", 1): 85.33,
    (2, "iwae", 5): 83.89,
    (2, "iwae", 50): 82.90,
}
BURDA_2015_CITATION = (
    "Importance Weighted Autoencoders. Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. "
    "2015 (ICLR 2016). Table 1, MNIST (dynamic binarization), k = 5000."
)


def burda_table(layers: int | None = None) -> str:
    """Burda et al.'s Table 1 (MNIST NLL) as a markdown table."""
    rows = ["| layers | k | VAE NLL | IWAE NLL |", "|---|---|---|---|"]
    for (lay, obj, k), _ in BURDA_2015_MNIST.items():
        if obj != "vae" or (layers is not None and lay != layers):
            continue
        rows.append(
            f"| {lay} | {k} | {BURDA_2015_MNIST[(lay, 'vae', k)]:.2f} | "
            f"{BURDA_2015_MNIST[(lay, 'iwae', k)]:.2f} |"
        )
    return "\n".join(rows)
