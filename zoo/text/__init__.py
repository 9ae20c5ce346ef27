"""Sentiment classification of a generated language with negation and intensifiers ("not bad", "hardly good",
"very good"), where word order decides the label: a BiLSTM and a TextCNN, and a bag-of-words baseline on the
same data that cannot see order and so scores clearly lower."""

BENCHMARK = {
    "text_bilstm": {"opts": "examples/text_bilstm.json", "metric": "test_accuracy", "target": 0.95, "minutes": 5,
                    "report": ["test_macro_f1"]},
    "text_textcnn": {"opts": "examples/text_textcnn.json", "metric": "test_accuracy", "target": 0.95, "minutes": 5,
                     "report": ["test_macro_f1"]},
    "text_bow": {"opts": "examples/text_bow.json", "metric": "test_accuracy", "target": 0.85, "goal": "min",
                 "minutes": 5, "report": ["test_macro_f1"]},
}
