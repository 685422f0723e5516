"""The deep model's network: GRU/LSTM/Transformer encoder, customer features, the heads."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

ENCODERS = ("gru", "lstm", "transformer")
_MASKED = -1.0e4  # logit of a masked trajectory period: exp underflows to exactly 0 in float32
#: Names of :class:`DeepNet`'s inputs and outputs, in order (for an exporter).
INPUT_NAMES = ("sequence", "numeric", "categorical", "label_days")
OUTPUT_NAMES = ("ziln", "log_shares", "log_transactions", "churn_logit", "next_purchase_days")


class _RNNEncoder(nn.Module):
    """GRU or LSTM over the periods; the last step's output, (n, hidden).

    ``forward(seq, skip)``: the first ``skip`` periods are the same input in
    every row (periods without activity, before a customer's first one), so
    the recurrence over them is run once, on one row, and its state starts
    every row's recurrence over the remaining periods: the same outputs and
    gradients as the full recurrence (up to float rounding), for
    ``1 − skip / lookback`` of the work. Exact only for one layer (the dropout
    between layers would differ), which the caller checks.
    """

    def __init__(self, kind: str, n_channels: int, hidden: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        cls = nn.GRU if kind == "gru" else nn.LSTM
        self.rnn = cls(n_channels, hidden, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)

    def forward(self, seq: torch.Tensor, skip: int = 0) -> torch.Tensor:
        if skip == 0:
            return self.rnn(seq)[0][:, -1, :]
        state = self.rnn(seq[:1, :skip])[1]
        n = seq.shape[0]
        if isinstance(state, tuple):  # LSTM: (h, c)
            state = tuple(s.expand(-1, n, -1).contiguous() for s in state)
        else:
            state = state.expand(-1, n, -1).contiguous()
        return self.rnn(seq[:, skip:], state)[0][:, -1, :]


class _TransformerEncoder(nn.Module):
    """Input projection + learned positional embedding + TransformerEncoder; mean over periods, (n, hidden)."""

    def __init__(self, n_channels: int, lookback: int, hidden: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        heads = next(h for h in (4, 2, 1) if hidden % h == 0)
        self.project = nn.Linear(n_channels, hidden)
        self.position = nn.Parameter(torch.zeros(1, lookback, hidden))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            hidden, heads, dim_feedforward=2 * hidden, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.project(seq) + self.position).mean(dim=1)


class DeepNet(nn.Module):
    """The network of :class:`DeepForecaster`: raw inputs in, raw head outputs out.

    ``forward(sequence, numeric, categorical, label_days)`` has no
    data-dependent Python control flow (exportable, e.g. to ONNX):

    Inputs:
        sequence: float32 (n, lookback, channels), the raw
            ``FeatureSet.sequences`` values (currency, counts).
        numeric: float32 (n, n_numeric), raw numeric features (NaN = missing).
        categorical: int64 (n, n_categorical), vocabulary indexes (0 = unknown).
        label_days: float32 (n,), the horizon in days.

    Outputs (a tuple):
        ziln: (n, 3) ``(f_p, μ, f_s)`` — P(spend > 0) = sigmoid(f_p),
            σ = exp(clip(f_s)) (see :mod:`~ltvcast.models.learned.ziln`);
        log_shares: (n, K) log of the spend share of each horizon period
            (≈ −1e4 for periods at or after ``label_days``);
        log_transactions: (n,) log expected purchase occasions;
        churn_logit: (n,) logit of P(no occasion);
        next_purchase_days: (n,) E[days to the first occasion | one occurs],
            in ``[0, label_days − 1]``.

    Args:
        config: the sizes and constants (``encoder``, ``hidden_size``,
            ``n_layers``, ``dropout``, ``lookback``, ``n_channels``,
            ``n_numeric``, ``missing`` (indexes of numeric columns with a
            missing indicator), ``cat_sizes``, ``offsets`` (K,),
            ``label_scale``, ``seq_mean``/``seq_std`` (channels,),
            ``num_mean``/``num_std`` (n_numeric,), ``mu_bounds``).
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        hidden, dropout = int(config["hidden_size"]), float(config["dropout"])
        if config["encoder"] == "transformer":
            self.encoder = _TransformerEncoder(
                config["n_channels"], config["lookback"], hidden, config["n_layers"], dropout
            )
        else:
            self.encoder = _RNNEncoder(config["encoder"], config["n_channels"], hidden, config["n_layers"], dropout)
        dims = [min(8, (size + 1) // 2 + 1) for size in config["cat_sizes"]]
        self.embeddings = nn.ModuleList(nn.Embedding(size, d) for size, d in zip(config["cat_sizes"], dims))
        n_in = config["n_numeric"] + len(config["missing"]) + sum(dims) + 2
        self.customer = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.trunk = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU()
        )
        k = len(config["offsets"])
        self.ziln = nn.Linear(hidden, 3)
        self.trajectory = nn.Linear(hidden, k)
        self.transactions = nn.Linear(hidden, 1)
        self.churn = nn.Linear(hidden, 1)
        self.next_purchase = nn.Linear(hidden, 1)

        def const(name: str, value, dtype=torch.float32) -> None:
            self.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=dtype))

        const("seq_mean", config["seq_mean"])
        const("seq_std", config["seq_std"])
        const("num_mean", config["num_mean"])
        const("num_std", config["num_std"])
        const("missing", config["missing"], torch.int64)
        const("offsets", config["offsets"])
        const("label_scale", float(config["label_scale"]))
        const("mu_lo", float(config["mu_bounds"][0]))
        const("mu_hi", float(config["mu_bounds"][1]))

    def forward(self, sequence, numeric, categorical, label_days, skip: int = 0):
        """Raw head outputs for raw inputs; shapes in the class docstring.

        ``skip`` (training only; a recurrent encoder of one layer): the first
        ``skip`` periods are zero in every row (:class:`_RNNEncoder`).
        """
        seq = torch.sign(sequence) * torch.log1p(torch.abs(sequence))
        seq = (seq - self.seq_mean) / self.seq_std
        num = torch.sign(numeric) * torch.log1p(torch.abs(numeric))
        num = (num - self.num_mean) / self.num_std
        absent = torch.isnan(num)
        num = torch.where(absent, torch.zeros_like(num), num)
        flags = torch.index_select(absent, 1, self.missing).to(num.dtype)
        ld = (label_days / self.label_scale).unsqueeze(1)
        emb = [e(categorical[:, i]) for i, e in enumerate(self.embeddings)]
        x = torch.cat([num, flags, ld, torch.log(ld)] + emb, dim=1)
        encoded = self.encoder(seq, skip) if skip else self.encoder(seq)
        h = self.trunk(torch.cat([encoded, self.customer(x)], dim=1))
        z = self.ziln(h)
        ziln = torch.stack([z[:, 0], torch.clamp(z[:, 1], self.mu_lo, self.mu_hi), z[:, 2]], dim=1)
        valid = self.offsets.unsqueeze(0) < label_days.unsqueeze(1)
        logits = torch.where(valid, self.trajectory(h), torch.full_like(valid, _MASKED, dtype=h.dtype))
        log_shares = torch.log_softmax(logits, dim=1)
        log_tx = torch.minimum(self.transactions(h)[:, 0], torch.log(label_days))
        churn_logit = self.churn(h)[:, 0]
        next_days = torch.sigmoid(self.next_purchase(h)[:, 0]) * (label_days - 1.0)
        return ziln, log_shares, log_tx, churn_logit, next_days
