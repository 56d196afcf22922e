"""encoder.pooling: the first token, or the mean over real tokens (padding masked out); the
encoder's loading report, quiet when it only reports the pooler left out on purpose; and a
pretrained encoder loaded once per process and copied per job (sweep jobs sharing a process),
exactly what a fresh load gives."""

import pytest
import torch

from moo_lightning.tasks.glue import encoders
from moo_lightning.tasks.glue.encoders import Backbone, TextClassifier, pool


def test_mean_pooling_ignores_padded_positions():
    hidden = torch.arange(24, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    out = pool(hidden, mask, "mean")
    torch.testing.assert_close(out[0], hidden[0, :2].mean(0))
    torch.testing.assert_close(out[1], hidden[1].mean(0))
    torch.testing.assert_close(pool(hidden, mask, "cls"), hidden[:, 0])


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_features_of_a_sentence_do_not_depend_on_the_padding_added_for_others(pooling):
    torch.manual_seed(0)
    backbone = Backbone("tiny", pooling=pooling)
    model = TextClassifier(backbone, num_labels=2).eval()
    tok = backbone.tokenizer
    short, long = "a good film", "a dull film with a weak plot and poor acting"
    alone = tok([short], return_tensors="pt")
    padded = tok([short, long], padding=True, return_tensors="pt")
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]  # padded
    with torch.no_grad():
        logits_a, feats_a = model(alone["input_ids"], alone["attention_mask"])
        logits_b, feats_b = model(padded["input_ids"], padded["attention_mask"])
    torch.testing.assert_close(feats_a[0], feats_b[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits_a[0], logits_b[0], rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # and the features are what the setting says
        hidden = model.encoder(**alone).last_hidden_state[0]
    expected = hidden.mean(0) if pooling == "mean" else hidden[0]
    torch.testing.assert_close(feats_a[0], expected)


def test_unknown_pooling_names_the_key_and_the_choices():
    with pytest.raises(ValueError, match="encoder.pooling must be one of cls, mean. Found 'max'"):
        Backbone("tiny", pooling="max")


def test_only_a_pooler_only_loading_report_is_dropped():
    import logging

    from moo_lightning.tasks.glue.encoders import _PoolerOnlyReport

    def report(*rows: str) -> logging.LogRecord:
        table = "\n".join(["Key | Status |  |", "----+-------+--+-", *rows])
        text = f"\x1b[1mBertModel LOAD REPORT\x1b[0m from: /x\n{table}\nNotes:\n- UNEXPECTED: ..."
        return logging.LogRecord(
            "transformers.modeling_utils", logging.WARNING, "", 0, text, None, None
        )

    keep = _PoolerOnlyReport().filter
    assert not keep(
        report("pooler.dense.bias   | UNEXPECTED |  |", "pooler.dense.weight | UNEXPECTED |  |")
    )
    assert keep(report("pooler.dense.bias | UNEXPECTED |  |", "encoder.layer.0.x | MISSING |  |"))
    assert keep(report("classifier.weight | UNEXPECTED |  |"))
    assert keep(logging.LogRecord("t", logging.WARNING, "", 0, "something else", None, None))


# --- loaded once per process ----------------------------------------------------------------------


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_encoder_is_loaded_once_per_process_and_copied_per_job(saved_model):
    first = Backbone(saved_model)
    second = Backbone(saved_model)
    fresh = Backbone(saved_model, cache=False)
    assert (first.cache_hit, second.cache_hit, fresh.cache_hit) == (False, True, False)
    assert second.encoder is not first.encoder
    for k, v in _state(fresh.encoder).items():
        torch.testing.assert_close(second.encoder.state_dict()[k], v, rtol=0, atol=0)
    # a job training its copy leaves the cached weights pristine for the next job
    with torch.no_grad():
        for p in second.encoder.parameters():
            p.add_(1.0)
    third = Backbone(saved_model)
    for k, v in _state(fresh.encoder).items():
        torch.testing.assert_close(third.encoder.state_dict()[k], v, rtol=0, atol=0)
    # tiny models are drawn from the seed, never cached
    assert not Backbone("tiny").cache_hit and "tiny" not in encoders._PRETRAINED
