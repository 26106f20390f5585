"""The sentiment model: embedding, recurrent stack, readout and a one-logit head.

Padded batches are handled exactly without `pack_padded_sequence`, which costs 1.7x-4.5x per step
on CPU. Each row is left-aligned first (its tokens in order, then padding), so a plain
unidirectional cuDNN/MKL layer computes exact states for every step before the row's length:
padding only ever comes after them, and no readout looks at those later steps. The backward
direction runs a separate layer over each row reversed within its own length. The logit is
therefore the same whether a review is padded before or after, by 0 or by 50 steps.

With `bigrams` (and `trigrams`), each step's input also carries an embedding of the word pair (and
triple) ending there, for the training set's most frequent ones: the recurrence then reads "not
good" as one unit from its first step, which is what lets it overtake bag-of-n-gram models on IMDB.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, ValidationError, ValidationInfo, field_validator
from torch import Tensor, nn

from rnn_sentiment.params import ModelParams, problem
from rnn_sentiment.text import ENDS_CLAUSE, NEGATOR, PAD_ID, PLAIN, UNK_ID

_LAYERS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
NGRAM_INIT_STD = 0.1  # n-gram embeddings start small: a phrase first means what its words mean
_NO_NGRAM = torch.iinfo(torch.int64).max  # fills unused key slots; no real n-gram reaches it
MAX_TRIGRAM_VOCAB = 2_097_152  # 2**21: a triple's key, vocab_size**3, must stay below _NO_NGRAM


class ModelConfig(ModelParams):
    """Everything that builds a `SentimentRNN`: the architecture params (`train.model`, defaults
    and validation from `params.ModelParams`) and the vocabulary size the tokenizer gives.

    Frozen and validated on construction; lists are accepted for the tuple fields (as YAML and
    JSON give them).
    """

    vocab_size: int = Field(strict=True, ge=2)  # including the reserved ids PAD_ID and UNK_ID

    @field_validator("vocab_size")
    @classmethod
    def _trigram_keys_fit(cls, vocab_size: int, info: ValidationInfo) -> int:
        triples = info.data.get("trigrams") or (
            info.data.get("nb_features") and info.data.get("nb_order") == 3
        )
        if triples and vocab_size >= MAX_TRIGRAM_VOCAB:
            raise ValueError(
                f"trigrams need a vocabulary below {MAX_TRIGRAM_VOCAB} words: lower "
                "tokenize.max_features, or set train.model.trigrams: 0 and nb_order below 3"
            )
        return vocab_size

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (tuples as lists): fit for YAML, JSON and `weights_only` checkpoints."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a config from `to_dict()` output (keys it lacks take their defaults, as in
        checkpoints written before the key existed); a bad one is a one-line `ValueError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ValueError(f"model config: {problem(err, cls)}") from None


def _mlp(in_dim: int, sizes: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    """Linear+ReLU per size (an empty Sequential is the identity), and the output width."""
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_dim, size), nn.ReLU()]
        in_dim = size
    return nn.Sequential(*layers), in_dim


def _gather_steps(x: Tensor, index: Tensor) -> Tensor:
    """`x[b, index[b, t]]` for x [B, T, D] and index [B, T]: reorders the steps of each row."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class NgramEmbedding(nn.Module):
    """Embeddings of the n-grams ending at each step, for `size` n-grams learned from training rows.

    An n-gram is keyed by its word ids as the digits of a base-`vocab_size` number. The keys are a
    sorted buffer, so they travel in the state dict and a lookup is one `searchsorted`; embedding
    row 0 stands for "not a learned n-gram" and stays zero.
    """

    def __init__(self, order: int, size: int, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.order, self.vocab_size = order, vocab_size
        self.register_buffer("keys", torch.full((size,), _NO_NGRAM))  # none matches until `learn`
        self.embedding = nn.Embedding(size + 1, dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=NGRAM_INIT_STD)
        self.embedding.weight.data[0].zero_()

    def forward(self, ids: Tensor) -> Tensor:
        """Embeddings [B, S, E] of the n-grams ending at each step of left-aligned `ids` [B, S]."""
        keys, _ = self._keys(ids)
        position = torch.searchsorted(self.keys, keys).clamp_(max=len(self.keys) - 1)
        return self.embedding(torch.where(self.keys[position] == keys, position + 1, 0))

    def learn(self, ids: Tensor) -> None:
        """Keep the most frequent n-grams of the padded rows `ids`. N-grams with padding or an
        unknown word are not counted; ties go to the n-gram of more frequent words (lower ids), so
        the same rows always give the same n-grams."""
        keys, known = self._keys(ids)
        keys, counts = torch.unique(keys[known], return_counts=True)  # sorted keys
        kept = keys[torch.argsort(-counts, stable=True)[: len(self.keys)]].sort().values
        self.keys.fill_(_NO_NGRAM)
        self.keys[: len(kept)] = kept

    def _keys(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        return ngram_keys(ids, self.order, self.vocab_size)


def ngram_keys(ids: Tensor, order: int, vocab_size: int) -> tuple[Tensor, Tensor]:
    """The key of the n-gram of `order` words ending at each step [B, S], and whether all its
    words are known. Steps before a row's start read as padding, so they never match a learned
    key. Keys of different orders never meet: known ids start at 2, so a pair's key is at least
    2 * vocab_size, above every word's, and a triple's above every pair's."""
    ids = nn.functional.pad(ids.long(), (order - 1, 0), value=PAD_ID)
    steps = ids.size(1) - order + 1
    keys = torch.zeros_like(ids[:, :steps])
    known = torch.ones_like(keys, dtype=torch.bool)
    for offset in range(order):
        word = ids[:, offset : offset + steps]
        keys = keys * vocab_size + word
        known &= word > UNK_ID
    return keys, known


def _any_in_window(flags: Tensor, order: int) -> Tensor:
    """Whether any of the `order` steps ending at each step [B, T] is set in `flags` [B, T]
    (steps before a row's start count as unset)."""
    padded = nn.functional.pad(flags.to(torch.int8), (order - 1, 0))
    return padded.unfold(1, order, 1).amax(-1).bool()


class NaiveBayesBranch(nn.Module):
    """A linear model over the distinct n-grams of a review (words, pairs and triples up to
    `order`), each feature scaled by its Naive-Bayes log-count ratio: NBSVM (Wang & Manning, ACL
    2012), the strongest bag-of-n-grams model on IMDB. The logit is sum_g w_g r_g + b over the
    n-grams g present, r_g = log of how much likelier g is in a positive review than a negative
    one, counted on the training rows, and w learned.

    It counts what the recurrence reads in order: millions of n-grams at one weight each, cheap to
    train and to serve, where the recurrence adds what order tells (negation, "but overall").
    """

    COUNT_ROWS = 1024  # training rows whose n-grams are listed at once while counting

    def __init__(self, order: int, size: int, vocab_size: int, negation: bool = False) -> None:
        super().__init__()
        self.order, self.vocab_size, self.negation = order, vocab_size, negation
        self.register_buffer("keys", torch.full((size,), _NO_NGRAM))  # sorted; none until `learn`
        self.register_buffer("ratios", torch.zeros(size + 1))  # row 0: "not a learned n-gram"
        if negation:  # each id's role in negation scope (`text.word_roles`); set by `learn`
            self.register_buffer("roles", torch.full((vocab_size,), PLAIN, dtype=torch.int8))
        self.weight = nn.Parameter(torch.zeros(size + 1))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, ids: Tensor) -> Tensor:
        """Logits [B] for token ids [B, T] padded on either side."""
        keys = self._distinct_keys(ids)
        position = torch.searchsorted(self.keys, keys).clamp_(max=len(self.keys) - 1)
        index = torch.where(self.keys[position] == keys, position + 1, 0)  # [B, K]
        # `embedding`, not `self.weight[index]`: indexing's backward adds into the weights with
        # atomic adds on several CPU threads, in an order that changes from run to run, so the
        # same seed would not give the same model. Embedding's backward sums in a fixed order.
        weights = nn.functional.embedding(index, self.weight.unsqueeze(1)).squeeze(-1)
        return (weights * self.ratios[index]).sum(1) + self.bias

    def learn(self, ids: Tensor, labels: Tensor, roles: Tensor | None = None) -> None:
        """Keep the n-grams found in most training rows, and their log-count ratios from the
        number of positive and negative rows holding each (add-one smoothed). Ties go to the
        lower key, so the same rows always give the same n-grams. A branch with `negation` needs
        the tokenizer's `roles`, and keeps them."""
        if self.negation:
            if roles is None:
                raise ValueError("a branch with negation scope needs the tokenizer's word roles")
            self.roles.copy_(roles)
        listed, positive = [], []
        for start in range(0, len(ids), self.COUNT_ROWS):
            keys = self._distinct_keys(ids[start : start + self.COUNT_ROWS])  # [R, K]
            kept = keys != _NO_NGRAM
            listed.append(keys[kept])
            rows_label = labels[start : start + self.COUNT_ROWS] > 0.5
            positive.append(rows_label.unsqueeze(1).expand_as(keys)[kept])
        keys, inverse, rows = torch.unique(
            torch.cat(listed), return_inverse=True, return_counts=True
        )
        in_positive = torch.bincount(inverse, torch.cat(positive).double(), len(keys))
        chosen = torch.argsort(-rows, stable=True)[: len(self.keys)].sort().values
        p = 1 + in_positive[chosen]
        q = 1 + rows[chosen] - in_positive[chosen]
        self.keys.fill_(_NO_NGRAM)
        self.keys[: len(chosen)] = keys[chosen]
        self.ratios.zero_()
        self.ratios[1 : len(chosen) + 1] = (p / p.sum()).log() - (q / q.sum()).log()

    def _distinct_keys(self, ids: Tensor) -> Tensor:
        """Each row's n-gram keys [B, K], every distinct one once, the rest `_NO_NGRAM`: a
        feature says whether an n-gram occurs, not how often (binarized, as NBSVM). With
        `negation`, an n-gram any of whose words is in a negation's scope has its key's bitwise
        complement: negative, so it meets no other key. Any word, not only the last: as when
        each word in scope is marked before n-grams are formed (Pang et al. 2002), "excellent ."
        of "not excellent." is then not the praise that "excellent ." is elsewhere."""
        in_scope = self._in_negation_scope(ids) if self.negation else None
        keys = []
        for order in range(1, self.order + 1):
            order_keys, known = ngram_keys(ids, order, self.vocab_size)
            if in_scope is not None:
                negated = _any_in_window(in_scope, order)
                order_keys = torch.where(negated, ~order_keys, order_keys)
            keys.append(order_keys.masked_fill_(~known, _NO_NGRAM))
        keys = torch.cat(keys, dim=1).sort(dim=1).values
        repeated = torch.zeros_like(keys, dtype=torch.bool)
        repeated[:, 1:] = keys[:, 1:] == keys[:, :-1]
        return keys.masked_fill_(repeated, _NO_NGRAM)

    def _in_negation_scope(self, ids: Tensor) -> Tensor:
        """Whether each step [B, T] follows a negator with no clause end between them."""
        roles = self.roles[ids.long()]
        steps = torch.arange(ids.size(1), device=ids.device)
        last_negator = torch.where(roles == NEGATOR, steps, -1).cummax(1).values
        last_end = torch.where(roles == ENDS_CLAUSE, steps, -1).cummax(1).values
        return (last_negator > last_end) & (last_negator < steps)


class SentimentRNN(nn.Module):
    """One logit per review from padded token ids, exact for any padding side or amount.

    A row with no tokens at all (an empty review) is read as one padding step, whose embedding is
    zero, so its logit is finite: what the model makes of an empty text.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        self.ngrams = nn.ModuleDict(
            {
                name: NgramEmbedding(order, size, config.vocab_size, config.embedding_dim)
                for name, order, size in (
                    ("bigrams", 2, config.bigrams),
                    ("trigrams", 3, config.trigrams),
                )
                if size
            }
        )
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        # Drops whole steps of [B, S, E]: a review must still read right without any one phrase,
        # so the model cannot lean on the names and titles that mark a film in training.
        self.word_dropout = nn.Dropout1d(config.word_dropout)
        self.input_mlp, in_dim = _mlp(config.embedding_dim, config.input_layers)
        # One single-layer unidirectional module per layer and direction: directions meet between
        # layers, so a multi-layer or bidirectional torch module cannot be used on aligned rows.
        directions = 2 if config.bidirectional else 1
        self.recurrent = nn.ModuleList()
        for _ in range(config.num_layers):
            self.recurrent.append(
                nn.ModuleList(
                    _LAYERS[config.cell](in_dim, config.hidden_dim, batch_first=True)
                    for _ in range(directions)
                )
            )
            in_dim = config.hidden_dim * directions
        self.dropout = nn.Dropout(config.dropout)
        readout_dim = in_dim * (2 if config.pooling == "mean_max" else 1)
        head_mlp, head_dim = _mlp(readout_dim, config.head_layers)
        self.head = nn.Sequential(nn.Dropout(config.dropout), head_mlp, nn.Linear(head_dim, 1))

    def forward(self, ids: Tensor) -> Tensor:
        """Logits [B] for token ids [B, T] padded with PAD_ID on either side."""
        lengths = (ids != PAD_ID).sum(1).clamp_(min=1)  # [B]; an empty row reads one padding step
        steps = int(lengths.max())
        # Stable sort of the padding flags: each row's tokens first, in order, then its padding.
        order = torch.argsort((ids == PAD_ID).to(torch.int8), dim=1, stable=True)  # [B, T]
        ids = ids.gather(1, order[:, :steps])  # [B, S], S = longest row
        t = torch.arange(steps, device=ids.device)  # [S]
        valid = t < lengths.unsqueeze(1)  # [B, S]
        # Step t of a row reversed within its length; padding steps stay put. An involution.
        reverse = torch.where(valid, lengths.unsqueeze(1) - 1 - t, t)  # [B, S]

        x = self.embedding(ids)  # [B, S, E]
        for ngrams in self.ngrams.values():
            x = x + ngrams(ids)
        x = self.input_mlp(self.embedding_dropout(self.word_dropout(x)))  # [B, S, E or I]
        for depth, directions in enumerate(self.recurrent):
            if depth:
                x = self.dropout(x)
            left_to_right = directions[0](x)[0]  # [B, S, H]
            if len(directions) == 1:
                x = left_to_right
                continue
            right_to_left = directions[1](_gather_steps(x, reverse))[0]  # [B, S, H], reversed
            right_to_left = _gather_steps(right_to_left, reverse)  # [B, S, H], original order
            x = torch.cat([left_to_right, right_to_left], dim=-1)  # [B, S, 2H]

        features = self._readout(x, lengths, valid)  # [B, D*H] or [B, 2*D*H] for mean_max
        return self.head(features).squeeze(-1)  # [B]

    def learn_ngrams(self, ids: Tensor, labels: Tensor, roles: Tensor | None = None) -> None:
        """Learn the n-grams that get their own embedding from the training rows `ids` (whose
        `labels` and the tokenizer's word `roles` only the Naive-Bayes branch of an `Ensemble`
        needs)."""
        for ngrams in self.ngrams.values():
            ngrams.learn(ids)

    def _readout(self, states: Tensor, lengths: Tensor, valid: Tensor) -> Tensor:
        """Pool the top layer's states [B, S, D*H] over each row's own steps only."""
        pooling = self.config.pooling
        if pooling == "last":
            # Forward: the state after the last token. Backward: its own last step, which is the
            # state after reading the whole row right to left, found at original position 0.
            rows = torch.arange(states.size(0), device=states.device)
            last = states[rows, lengths - 1, : self.config.hidden_dim]  # [B, H]
            if not self.config.bidirectional:
                return last
            return torch.cat([last, states[:, 0, self.config.hidden_dim :]], dim=-1)  # [B, 2H]
        pooled = []
        if pooling in ("mean", "mean_max"):
            mask = valid.unsqueeze(-1).to(states.dtype)  # [B, S, 1]
            pooled.append((states * mask).sum(1) / lengths.unsqueeze(1))  # [B, D*H]
        if pooling in ("max", "mean_max"):
            padded = states.masked_fill(~valid.unsqueeze(-1), float("-inf"))  # [B, S, D*H]
            pooled.append(padded.amax(1))  # [B, D*H]
        return torch.cat(pooled, dim=-1)


class Ensemble(nn.Module):
    """`config.members` networks read each review, beside a `NaiveBayesBranch` when
    `config.nb_features` is set; the output is their mean logit.

    Each member starts from its own initialisation and has its own dropout, so their errors are
    partly independent and the mean is more accurate than a member. While training, `forward`
    returns every member's logits [M, B] so that each member learns from its own loss: trained on
    the mean alone, members co-adapt into one wider network instead. The Naive-Bayes branch, last
    of the M, likewise learns alone: trained through the sum, it would fit the training rows
    within an epoch and leave the recurrence nothing to learn from. Its logit then meets the
    networks' mean as `blend` weighs them: a*networks + b*branch + c, fitted on the validation
    split after each epoch (`training.fit_blend`), as one branch is often the surer.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(SentimentRNN(config) for _ in range(config.members))
        self.naive_bayes = None
        if config.nb_features:
            self.naive_bayes = NaiveBayesBranch(
                config.nb_order, config.nb_features, config.vocab_size, config.nb_negation
            )
            # (a, b, c) of a*networks + b*branch + c; until fitted, the mean of the two.
            self.register_buffer("blend", torch.tensor([0.5, 0.5, 0.0]))

    def forward(self, ids: Tensor) -> Tensor:
        """Logits [B] (eval mode) or [M, B] (train mode) for token ids [B, T]."""
        logits = self.member_logits(ids)  # [M, B]
        return logits if self.training else self.combine(logits)

    def member_logits(self, ids: Tensor) -> Tensor:
        """Each member's logits [M, B], the Naive-Bayes branch's last."""
        logits = [member(ids) for member in self.members]
        if self.naive_bayes is not None:
            logits.append(self.naive_bayes(ids))
        return torch.stack(logits)

    def combine(self, logits: Tensor) -> Tensor:
        """The output [B] from the members' logits [M, B]: the networks' mean, blended with the
        Naive-Bayes branch if there is one."""
        if self.naive_bayes is None:
            return logits.mean(0)
        a, b, c = self.blend
        return a * logits[:-1].mean(0) + b * logits[-1] + c

    def learn_ngrams(self, ids: Tensor, labels: Tensor, roles: Tensor | None = None) -> None:
        """Count the n-grams once and give every member the same ones; count the Naive-Bayes
        branch's n-grams and their ratios on the same rows."""
        first = self.members[0]
        first.learn_ngrams(ids, labels)
        for member in self.members[1:]:
            for name, ngrams in member.ngrams.items():
                ngrams.keys.copy_(first.ngrams[name].keys)
        if self.naive_bayes is not None:
            self.naive_bayes.learn(ids, labels, roles)


Network = SentimentRNN | Ensemble


def build(config: ModelConfig) -> Network:
    """The network `config` describes: one `SentimentRNN`, or an `Ensemble` of them (with the
    Naive-Bayes branch, if any)."""
    alone = config.members == 1 and not config.nb_features
    return SentimentRNN(config) if alone else Ensemble(config)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
