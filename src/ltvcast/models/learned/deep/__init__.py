"""Deep sequence CLV model (``deep``, ``deep-lstm``, ``deep-transformer``): PyTorch, CPU.

Training protocol: the one of :mod:`ltvcast.models.learned.gbm` (time-shifted
windows of :mod:`ltvcast.models.learned.examples`: full windows
``c_k = C − H − k·stride``, ``k = 0`` validates; recent windows with label
windows shortened to end at ``C``). Nothing at or after ``C`` is read: the
transactions are cut at ``C`` first, store features are point in time.

Inputs at each window's cutoff ``c`` (:class:`SequenceFeatureMaker`):

* the customer-level features of ``gbm`` (numeric store features without the
  absolute-age columns, plus the age-robust ratios of
  :func:`~ltvcast.models.learned.features.derived_features`);
* the categorical (text) store features, as embeddings (vocabulary from the
  training rows, unknown or missing → index 0);
* the per-period sequences of :func:`ltvcast.features.build`
  (``lookback`` periods of ``period`` ending at ``c``, every default channel);
* ``label_days``, the label window length (``H`` at prediction time).

Network (:class:`DeepNet`), a pure tensor function of
``(sequence, numeric, categorical, label_days)``:

1. inputs are transformed inside the network with constants fitted on the
   training rows: ``sign(x) · ln(1 + |x|)`` for every sequence channel and
   numeric feature (money and counts are heavy-tailed; ratios in [0, 1]
   barely change), then standardised; a numeric feature missing in some
   training row gets a missing indicator and 0 (the training mean) where
   missing;
2. an encoder over the period sequence: GRU or LSTM (last hidden state) or a
   small Transformer encoder (input projection + learned positional
   embedding, mean over positions);
3. an MLP over the customer-level features, embeddings and
   ``(label_days / H, ln(label_days / H))``;
4. a shared trunk over both, feeding the heads:

==================  =======================================  ===========================
output              head                                     training loss
==================  =======================================  ===========================
spend (horizon)     ZILN ``(f_p, μ, ln σ)``                  ZILN (Wang, Liu & Miao 2019)
trajectory          softmax over the K horizon periods       cross-entropy against each
                    (periods past ``label_days`` masked)     buyer's per-period spend shares
transactions        log rate, at most ``ln label_days``      Poisson NLL
p_churn             logit of P(no occasion)                  binary cross-entropy
next purchase       ``sigmoid(·) · (label_days − 1)`` days   squared error / label_days², buyers
==================  =======================================  ===========================

The per-period spend is ``ŷ_k = share_k · E[spend]``, so the trajectory sums
to the horizon mean exactly. The total loss is the sum of the five (nats,
except the last, a squared fraction of the window).

**Training.** AdamW (Loshchilov & Hutter 2019), minibatches, gradient norm
clipped at 1; an epoch is a fresh draw of at most ``epoch_rows`` training
rows, so the cost of a fit grows with the epochs, not with the shop. The
network evaluated and kept is the exponential moving average of the weights
(Polyak averaging, ``ema_decay`` per step): on CDNOW the last step's weights
moved the predicted total at the cutoff by ±10 % from one epoch to the next,
the average by a few percent. Early stopping on the validation window
(``patience`` epochs without a lower total validation loss). With
``refit=True`` (default; it measured better on CDNOW, see the README) a
validation network trained on the full windows ``k >= 1`` gives the epoch
count E and the calibration, and the final network is trained on every
window (the validation and recent ones included) for E epochs from fresh
weights; with ``warm_refit=w`` it instead starts from the validation
network's best weights and trains ``ceil(w·E)`` more epochs (cheaper, but
on CDNOW ``w = 0.5`` moved the total spend error from −11 % to −24 %, see
docs/speed.md, so it is off by default). Each epoch's rows are gathered
once and its batches are views of them; with ``bucket_batches`` (default)
the batches come from pools of 8 batches sorted by the rows' leading empty
periods and the recurrence runs the periods empty in every row of a batch
once. With
``refit=False`` the network is trained once, on every window except the
validation one, and the weights of the best validation epoch are kept (the
recent windows' labels fall inside the validation window's label period, so
its loss is then slightly optimistic).

**Calibration** on the validation window exactly as ``gbm``
(:mod:`~ltvcast.models.learned.calibration`): a level factor for spend (mean,
quantiles, trajectory), Platt scaling for ``p_churn``.

**Net revenue rule.** A label spend ``<= 0`` is zero spend for the ZILN and
the level calibration; a period with net spend ``<= 0`` has share 0 in the
trajectory target (the count of such training labels is in ``notes_``).
Predictions are never negative and bounded: σ is clipped to
``[SIGMA_MIN, SIGMA_MAX]`` (as :mod:`~ltvcast.models.learned.ziln`), μ to the
range of ``ln y`` of the positive training labels ± ``ln 10``, the
transaction rate to ``label_days`` (one occasion per day at most).

**Determinism.** ``fit`` seeds torch and its shuffling generator with
``seed``, runs with ``torch.use_deterministic_algorithms(True)`` and
``n_threads`` threads (restoring the previous settings and random state
afterwards); the same data, settings and seed give identical predictions.
Importing this module sets ``OMP_WAIT_POLICY=PASSIVE`` unless set (see the
comment there: spinning OpenMP threads are many times slower on shared
cores).

Source of the ZILN: X. Wang, T. Liu, J. Miao (2019), "A Deep Probabilistic
Model for Customer Lifetime Value Prediction", arXiv:1912.07753, section 3.
"""


import os

# OpenMP threads that spin while they wait (the default) make torch's many small CPU kernels
# 5-40x slower when other processes share the cores (measured: a GRU step on 2 shared cores,
# 260-1300 ms spinning vs 40-60 ms passive); waiting passively costs little on free cores.
# Read when torch loads its OpenMP runtime, so only before the first torch import; a value
# the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ltvcast.models.learned.deep.forecaster import DeepForecaster  # noqa: E402
from ltvcast.models.learned.deep.inputs import (  # noqa: E402
    DEFAULT_LOOKBACK,
    PERIOD_DAYS,
    SequenceFeatureMaker,
    period_offsets,
    period_spend,
)
from ltvcast.models.learned.deep.network import ENCODERS, DeepNet  # noqa: E402
from ltvcast.models.learned.deep.training import ziln_loss_torch  # noqa: E402

__all__ = [
    "DEFAULT_LOOKBACK",
    "DeepForecaster",
    "DeepNet",
    "ENCODERS",
    "PERIOD_DAYS",
    "SequenceFeatureMaker",
    "period_offsets",
    "period_spend",
    "ziln_loss_torch",
]
