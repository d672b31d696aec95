import time
from nace_app.classifier import Classifier
from nace_app.modelio import load_model
from nace_app.explain import integrated_gradients
from tests.test_class_words import TEXTS

def test_probe(attention_model_dir, bag_model_dir, tiny_frame):
    for d in (attention_model_dir, bag_model_dir):
        c = Classifier(load_model(d, lambda: tiny_frame["code"].to_list()))
        top = c.predict_top_k(TEXTS, top_k=3).codes.tolist()
        codes = [top[i][:1] if i % 2 else [top[i][0], top[i][2]] for i in range(len(TEXTS))]
        t = time.perf_counter()
        print([[e.steps for e in integrated_gradients(c, x, k)] for x, k in zip(TEXTS, codes)], time.perf_counter() - t)
