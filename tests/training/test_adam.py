"""Our row-wise Adam takes the same steps as torch's SparseAdam (the table) and AdamW (the rest)."""

import pytest
import torch

from nace_app.model.mean_pool import MeanPoolModel, flat_batch
from nace_app.training.adam import rowwise_adam


def _model() -> MeanPoolModel:
    torch.manual_seed(3)
    model = MeanPoolModel(vocab_size=50, embedding_dim=8, num_classes=4, padding_idx=0)
    torch.nn.init.normal_(model.classification_head.net.weight)  # the library's zero head would hide the table's steps
    return model


def _batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(7)
    batches = []
    for _ in range(steps):
        ids = torch.randint(1, 50, (6, 5), generator=generator)
        mask = (torch.rand((6, 5), generator=generator) > 0.3).long()
        mask[:, 0] = 1
        batches.append((ids, mask, torch.randint(0, 4, (6,), generator=generator)))
    return batches


@pytest.mark.parametrize("flat", [True, False], ids=["distinct rows (training's path)", "padded batch (repeated ids)"])
def test_rowwise_adam_steps_as_sparse_adam_on_the_table_and_adamw_on_the_rest(flat):
    ours, theirs = _model(), _model()
    optimizer = rowwise_adam(ours, weight_decay=0.01)
    theirs.token_embedder.embedding_layer.sparse = True
    table = theirs.token_embedder.embedding_layer.weight
    reference = [torch.optim.SparseAdam([table], lr=0.05),
                 torch.optim.AdamW([p for p in theirs.parameters() if p is not table], lr=0.05, weight_decay=0.01)]
    for step, (ids, mask, targets) in enumerate(_batches(5)):
        lr = 0.05 * (1 - step / 5)
        for group in reference:
            group.param_groups[0]["lr"] = lr
        for model in (ours, theirs):
            logits = model.forward_flat(*flat_batch(ids, mask)) if flat else model(ids, mask)
            torch.nn.functional.cross_entropy(logits, targets).backward()
        optimizer.step(lr)
        optimizer.zero_grad()
        for group in reference:
            group.step()
            group.zero_grad()
    for (name, mine), reference_value in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.allclose(mine, reference_value, atol=1e-6), name
    assert not torch.equal(ours.token_embedder.embedding_layer.weight, _model().token_embedder.embedding_layer.weight)


def test_rows_no_batch_used_do_not_move():
    model = _model()
    optimizer = rowwise_adam(model, weight_decay=0.0)
    before = model.token_embedder.embedding_layer.weight.detach().clone()
    ids, mask, targets = torch.tensor([[3, 4, 5]]), torch.ones((1, 3), dtype=torch.long), torch.tensor([1])
    torch.nn.functional.cross_entropy(model.forward_flat(*flat_batch(ids, mask)), targets).backward()
    optimizer.step(0.1)
    after = model.token_embedder.embedding_layer.weight.detach()
    moved = (after != before).any(dim=1).nonzero().flatten().tolist()
    assert moved == [3, 4, 5]
