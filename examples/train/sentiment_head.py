#!/usr/bin/python3
# The sentiment model's classifier head on its own: logits = embedding . classifier_w + classifier_b, the last two
# nodes of examples/models/sentiment/model.onnx, with the same weights, as examples/models/sentiment-head/model.onnx.
# Fed the sentiment model's mean-pooled embedding (the text handler's `task: embedding` with `normalize: false`), it
# gives the sentiment model's own logits: the example pipeline in serve.yaml (embedder, then head) is checkable
# against the one-model classifier. A tool only (Debian's python3-onnx), never run by tsserve:
#   /usr/bin/python3 examples/train/sentiment_head.py
import json
import os
import onnx
from onnx import TensorProto, helper, numpy_helper

here = os.path.dirname(os.path.abspath(__file__))
models = os.path.join(here, '..', 'models')
source = onnx.load(os.path.join(models, 'sentiment', 'model.onnx'))
weights = {i.name: numpy_helper.to_array(i) for i in source.graph.initializer}
w, b = weights['classifier_w'], weights['classifier_b']
dim, labels = w.shape

graph = helper.make_graph(
    [helper.make_node('MatMul', ['embedding', 'classifier_w'], ['projected']),
     helper.make_node('Add', ['projected', 'classifier_b'], ['logits'])],
    'sentiment_head',
    [helper.make_tensor_value_info('embedding', TensorProto.FLOAT, ['batch', dim])],
    [helper.make_tensor_value_info('logits', TensorProto.FLOAT, ['batch', labels])],
    [numpy_helper.from_array(w, 'classifier_w'), numpy_helper.from_array(b, 'classifier_b')])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], producer_name='tsserve-example')
model.ir_version = 8
onnx.checker.check_model(model)
out = os.path.join(models, 'sentiment-head')
os.makedirs(out, exist_ok=True)
onnx.save(model, os.path.join(out, 'model.onnx'))
with open(os.path.join(models, 'sentiment', 'config.json')) as f:
    config = json.load(f)
with open(os.path.join(out, 'config.json'), 'w') as f:
    json.dump({'architectures': ['SentimentHead'], 'model_type': 'tsserve-example', 'hidden_size': int(dim),
               'num_labels': int(labels), 'id2label': config['id2label'], 'label2id': config['label2id']}, f, indent=2)
    f.write('\n')
print(f'wrote {out}: model.onnx ({os.path.getsize(os.path.join(out, "model.onnx"))} bytes), config.json')
