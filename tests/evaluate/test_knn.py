import torch

from selfsup.evaluate.knn import knn_predict, knn_top1


def test_weighted_knn_on_a_toy_set_with_a_known_answer():
    # Two classes on the unit circle: class 0 near angle 0, class 1 near angle pi/2.
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 0.8]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    assert knn_predict(train, labels, test, k=2).tolist() == [0, 1]
    # With k=5 an unweighted vote is 3:2 for class 1 everywhere; the weighted vote still gets
    # the first query right because its two neighbours are much closer (T=0.1).
    assert knn_predict(train, labels, test, k=5, weighted=False).tolist() == [1, 1]
    assert knn_predict(train, labels, test, k=5, weighted=True).tolist() == [0, 1]
    assert knn_top1(train, labels, test, torch.tensor([0, 1]), k=5) == 1.0


def test_knn_is_invariant_to_feature_scale_and_chunking():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(200, 8, generator=g), torch.randn(50, 8, generator=g)
    labels = torch.randint(0, 4, (200,), generator=g)
    a = knn_predict(train, labels, test, k=20, chunk_size=7)
    b = knn_predict(train * 3, labels, test * 0.5, k=20, chunk_size=1000)
    assert torch.equal(a, b)
