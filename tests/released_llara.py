"""Step-by-step re-implementations of the released LLARA computations, for the equivalence tests.

Reference: FlagEmbedding ``research/LLARA`` (commit 98f209b): ``README.md`` (usage snippet: ``get_query_inputs``,
``get_passage_inputs``, the last-8-states mean), ``pretrain/data.py`` (``TrainDatasetForEmbedding.__getitem__``,
``EmbedCollator``), ``pretrain/modeling.py`` (``NewLlamaModel.forward``: the mask edit and the position-id copy;
``PreLlamaModel.forward``: the AR + BoW loss). Written independently of llara's code paths: llara must agree.
"""
from __future__ import annotations

import re
import warnings

import torch
import torch.nn.functional as F

PREFIX = '"'
SUMMARIZE_SUFFIX = '", summarize the above passage within eight words: <s1><s2><s3><s4><s5><s6><s7><s8>'
PREDICT_SUFFIX = '", predict the following passage within eight words: <s9><s10><s11><s12><s13><s14><s15><s16>'
MARKERS = 8
LABEL_PAD = -100
USEFUL_ID_ABOVE = 2  # pretrain/modeling.py keeps target ids > 2 (Llama-2: <unk> <s> </s> are 0 1 2)
BOW_DIVISOR = 10
NON_WORD = r"[\W_]+"


# ----------------------------------------------------------------------------------------- README usage snippet


def readme_inputs(tokenizer, texts, suffix, max_length=512):
    """``get_passage_inputs`` / ``get_query_inputs``: '"' with <s>, the text alone, the suffix minus <s>."""
    prefix_ids = tokenizer(PREFIX, return_tensors=None)["input_ids"]
    suffix_ids = tokenizer(suffix, return_tensors=None)["input_ids"][1:]
    rows = []
    for text in texts:
        inputs = tokenizer(text, return_tensors=None, max_length=max_length, truncation=True, add_special_tokens=False)
        ids = prefix_ids + inputs["input_ids"] + suffix_ids
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
    with warnings.catch_warnings():  # transformers notes that max_length is unused with padding=True
        warnings.simplefilter("ignore", UserWarning)
        return tokenizer.pad(rows, padding=True, max_length=max_length, pad_to_multiple_of=8, return_tensors="pt")


@torch.no_grad()
def readme_embeddings(model, inputs):
    """The snippet's embedding: the mean of the last 8 final hidden states, L2-normalised."""
    outputs = model(**inputs, return_dict=True, output_hidden_states=True)
    states = outputs.hidden_states[-1][:, -MARKERS:, :]
    return F.normalize(torch.mean(states, dim=1), dim=-1)


# ----------------------------------------------------------------------------------------- pretrain/data.py


def pretrain_suffix_ids(tokenizer, cutoff_len=512):
    return tokenizer([SUMMARIZE_SUFFIX, PREDICT_SUFFIX], truncation=True, max_length=cutoff_len,
                     return_tensors=None, add_special_tokens=False)["input_ids"]


def pretrain_example(tokenizer, text, cutoff_len):
    """``__getitem__``: input ids (prefix + truncated text + both suffixes) and the AR labels (the text only)."""
    prefix_ids = tokenizer(PREFIX, truncation=True, max_length=cutoff_len, return_tensors=None)["input_ids"]
    summarize_ids, predict_ids = pretrain_suffix_ids(tokenizer, cutoff_len)
    budget = cutoff_len - len(prefix_ids) - len(summarize_ids) - len(predict_ids)
    text_ids = tokenizer(text, truncation=True, max_length=budget, padding=False, return_tensors=None,
                         add_special_tokens=False)["input_ids"]
    input_ids = prefix_ids + text_ids + summarize_ids + predict_ids
    text_end = len(input_ids) - len(summarize_ids) - len(predict_ids)
    labels = ([LABEL_PAD] * len(prefix_ids) + input_ids[len(prefix_ids):text_end]
              + [LABEL_PAD] * (len(summarize_ids) + len(predict_ids)))
    return input_ids, labels


def pretrain_clean(text, stop_words):
    """``--remove_stop_words``: non-word runs become spaces, then the stop words are dropped."""
    text = re.sub(NON_WORD, " ", text)
    return " ".join(word for word in text.split() if word.lower() not in stop_words)


def pretrain_batch(tokenizer, items, cutoff_len):
    """``EmbedCollator`` with left padding (what the last-positions indexing of the model needs)."""
    width = max(len(input_ids) for input_ids, _, _, _ in items)
    input_ids, attention, labels = [], [], []
    for ids, row_labels, _, _ in items:
        pad = width - len(ids)
        input_ids.append([tokenizer.pad_token_id] * pad + ids)
        attention.append([0] * pad + [1] * len(ids))
        labels.append([LABEL_PAD] * pad + row_labels)
    summarize = tokenizer([item[2] for item in items], padding=True, truncation=True, max_length=cutoff_len,
                          return_tensors="pt")["input_ids"]
    predict = tokenizer([item[3] for item in items], padding=True, truncation=True, max_length=cutoff_len,
                        return_tensors="pt")["input_ids"]
    return torch.tensor(input_ids), torch.tensor(attention), torch.tensor(labels), summarize, predict


# ----------------------------------------------------------------------------------------- pretrain/modeling.py


def pretrain_logits(causal_lm, input_ids, attention_mask, summarize_len, predict_len):
    """``NewLlamaModel.forward``: causal + padding mask, the predict suffix blind to the summarize suffix, its
    position ids copied from the summarize suffix's (plain 0..L-1 otherwise); then the LM head, in float."""
    batch, length = input_ids.shape
    dtype = causal_lm.get_input_embeddings().weight.dtype
    minimum = torch.finfo(dtype).min
    mask = torch.full((length, length), minimum, dtype=dtype).triu(diagonal=1)[None, None].repeat(batch, 1, 1, 1)
    mask = mask.masked_fill(attention_mask[:, None, None, :] == 0, minimum)
    mask[:, :, -predict_len:, -predict_len - summarize_len:-predict_len] = minimum
    positions = torch.arange(length).unsqueeze(0).repeat(batch, 1)
    positions[:, -predict_len:] = positions[:, -summarize_len - predict_len:-summarize_len].clone()
    hidden = causal_lm.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                             use_cache=False).last_hidden_state
    return causal_lm.lm_head(hidden).float()


def _bow_side(logits, output_ids):
    log_p = torch.log_softmax(torch.max(logits, dim=1).values, dim=1)
    loss, counted = 0, 0
    for row_log_p, row_ids in zip(log_p, output_ids):
        useful = torch.unique(row_ids[row_ids > USEFUL_ID_ABOVE])
        if len(useful) > 0:
            loss = loss - torch.mean(row_log_p[useful])
            counted += 1
    return loss / counted / BOW_DIVISOR if counted else 0


def pretrain_loss(logits, labels, output_summarize_ids, output_predict_ids, predict_len):
    """``PreLlamaModel.forward``'s loss: next-token CE on the labels + the BoW losses / 10 (present sides)."""
    vocab = logits.shape[-1]
    ar_loss = F.cross_entropy(logits[..., :-1, :].reshape(-1, vocab), labels[..., 1:].reshape(-1))
    summarize = _bow_side(logits[:, -predict_len - MARKERS:-predict_len, :], output_summarize_ids)
    predict = _bow_side(logits[:, -MARKERS:, :], output_predict_ids)
    if summarize > 0 and predict > 0:
        bow = (summarize + predict) / 2
    elif summarize > 0:
        bow = summarize
    elif predict > 0:
        bow = predict
    else:
        return ar_loss
    return ar_loss + bow
