"""Encoders with a classification head, from a hub name, a local folder, the pip-packaged MiniLM,
or a tiny RoBERTa built from a config (tests)."""

from __future__ import annotations

import contextlib
import copy
import logging
import re

import torch
from torch import nn

from moo_lightning.hub import from_hub_or_disk, minilm_path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _PoolerOnlyReport(logging.Filter):
    """Drops transformers' loading report when all it reports is the checkpoint's pooler
    weights left unused: the encoder is built without a pooler on purpose (the features come
    from the token states), so the report says nothing a user can act on. Any other key in the
    report keeps it."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = _ANSI.sub("", record.getMessage())
        if "LOAD REPORT" not in text:
            return True
        rows = [
            line.split("|")
            for line in text.splitlines()
            if "|" in line and not line.lstrip().startswith(("Key", "-"))
        ]
        return not rows or not all(
            r[0].strip().startswith("pooler.") and r[1].strip() == "UNEXPECTED" for r in rows
        )


@contextlib.contextmanager
def _quiet_loading():
    """While the encoder loads: transformers' per-tensor "Loading weights" bar off (a second
    for these encoders) and its loading report only when it reports more than the pooler."""
    from transformers.utils import logging as hf_logging

    log = logging.getLogger("transformers.modeling_utils")
    only_pooler = _PoolerOnlyReport()
    log.addFilter(only_pooler)
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        log.removeFilter(only_pooler)
        if bar_was_on:
            hf_logging.enable_progress_bar()


def tiny_roberta(
    hidden: int = 32, layers: int = 2, heads: int = 2, vocab_size: int = 512, dropout: float = 0.1
):
    """A small RoBERTa with a byte-level BPE tokenizer trained on the fly (no downloads)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    corpus = [
        "the movie was good and the actors were great",
        "a dull film with a weak plot and poor acting",
        "what is the capital of france? paris is the capital of france.",
        "the premise entails the hypothesis, or it is neutral, or a contradiction",
        "question sentence label entailment not entailment positive negative",
    ] * 20
    bpe = ByteLevelBPETokenizer()
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(
        corpus, vocab_size=vocab_size, min_frequency=1, special_tokens=special, show_progress=False
    )
    from tokenizers.processors import RobertaProcessing

    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )
    config = RobertaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=514,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    return RobertaModel(config, add_pooling_layer=False), tokenizer


# cls: the first token's final hidden state ([CLS] / <s>; the seed paper's representation);
# mean: the mean over real tokens (padding masked out), how sentence-embedding encoders such as
# all-MiniLM-L6-v2 were trained
POOLINGS = ("cls", "mean")

# Pretrained weights loaded by this process, kept pristine (jobs get deep copies): the jobs of an
# in-process sweep (Hydra's basic launcher, or a reused joblib worker) load each encoder once.
# One entry (the last name loaded), so a sweep over models holds one spare copy at most.
_PRETRAINED: dict[str, tuple[nn.Module, object]] = {}


class Backbone:
    """An encoder and its tokenizer. ``name``: a hub id (default ``roberta-base``), a local folder,
    ``minilm`` (the pip-packaged offline encoder) or ``tiny`` (random small RoBERTa).

    ``cache``: keep the pretrained weights in memory for later jobs of the same process and give
    each job a deep copy (MiniLM: 0.05 s instead of 0.1 s, more for larger encoders or slow
    disks; the copy is identical, and loading draws no random numbers, so results do not depend
    on it). ``tiny`` is never cached: its weights are drawn from the run's seed."""

    def __init__(
        self,
        name: str = "roberta-base",
        cache: bool = True,
        pooling: str = "cls",
        dropout: float | None = None,
        **tiny_kwargs,
    ):
        if dropout is not None:
            ok = isinstance(dropout, int | float) and not isinstance(dropout, bool)
            if not (ok and 0.0 <= dropout < 1.0):
                raise ValueError(
                    f"encoder.dropout must be a probability in [0, 1) or null (the encoder's "
                    f"own). Found {dropout!r}"
                )
        if pooling not in POOLINGS:
            raise ValueError(
                f"encoder.pooling must be one of {', '.join(POOLINGS)}. Found {pooling!r}"
            )
        self.name = name
        self.pooling = pooling
        self.cache_hit = False
        if name == "tiny":
            drop = {} if dropout is None else {"dropout": float(dropout)}
            self.encoder, self.tokenizer = tiny_roberta(**tiny_kwargs, **drop)
            return
        if cache and name in _PRETRAINED:
            encoder, self.tokenizer = _PRETRAINED[name]
            self.encoder = copy.deepcopy(encoder)
            self.cache_hit = True
            self._set_dropout(dropout)
            return
        from transformers import AutoModel, AutoTokenizer

        path = minilm_path() if name == "minilm" else name
        self.tokenizer = from_hub_or_disk(AutoTokenizer.from_pretrained, path)
        with _quiet_loading():
            self.encoder = from_hub_or_disk(
                lambda p, **kw: AutoModel.from_pretrained(p, add_pooling_layer=False, **kw), path
            )
        if cache:
            _PRETRAINED.clear()
            _PRETRAINED[name] = (copy.deepcopy(self.encoder), self.tokenizer)
        self._set_dropout(dropout)

    def _set_dropout(self, p: float | None) -> None:
        """Every dropout layer of the encoder at probability ``p`` (None: the checkpoint's own,
        0.1 for RoBERTa-base and MiniLM); 0 makes training deterministic given the batches,
        which is what DDP runs need to equal one process exactly."""
        if p is None:
            return
        for module in self.encoder.modules():
            if isinstance(module, nn.Dropout):
                module.p = float(p)
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if hasattr(self.encoder.config, key):
                setattr(self.encoder.config, key, float(p))

    @property
    def dropout(self) -> float:
        """The largest dropout probability in the encoder (0: none)."""
        return max((m.p for m in self.encoder.modules() if isinstance(m, nn.Dropout)), default=0.0)

    @property
    def hidden_size(self) -> int:
        return self.encoder.config.hidden_size

    def data_arguments(self) -> dict:
        # the data are tokenised with the encoder's own tokenizer, no longer than it reads
        return {"tokenizer": self.tokenizer, "max_tokens": self.max_tokens}

    @property
    def max_tokens(self) -> int | None:
        """The longest input (special tokens included) the encoder has positions for: RoBERTa
        numbers positions from its padding id + 1 (514 embeddings: 512 tokens), BERT-style
        encoders from 0; the tokenizer's own limit when it is smaller. None: unknown."""
        config = self.encoder.config
        positions = getattr(config, "max_position_embeddings", None)
        if not isinstance(positions, int):
            return None
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            positions -= (getattr(config, "pad_token_id", None) or 0) + 1
        told = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(told, int) and 0 < told < positions:
            positions = told
        return positions

    def module_arguments(self) -> dict:
        return {"encoder": self}


class ClassificationHead(nn.Module):
    """RoBERTa-style head: dropout → dense → tanh → dropout → projection, on the first token."""

    def __init__(self, hidden: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.dense(self.dropout(features))
        return self.out_proj(self.dropout(torch.tanh(x)))


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Sentence features (B, d) from token states (B, T, d): the first token, or the mean over
    the tokens whose attention mask is 1."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class TextClassifier(nn.Module):
    """Encoder + head. forward(input_ids, attention_mask) -> (logits (B, C), pooled features
    (B, d), ``pooling`` cls or mean); the features feed the head and the contrastive terms
    (normalised there)."""

    def __init__(self, backbone: Backbone, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.pooling = backbone.pooling
        self.encoder = backbone.encoder  # its own dropout comes from its config (0.1 for RoBERTa)
        self.head = ClassificationHead(backbone.hidden_size, num_labels, dropout)
        # from_pretrained returns the encoder in eval mode, and Lightning keeps the modes it
        # finds: without this the encoder would fine-tune with its dropout switched off
        self.train()

    def forward(self, input_ids, attention_mask, **unused):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        features = pool(hidden, attention_mask, self.pooling)
        return self.head(features), features
