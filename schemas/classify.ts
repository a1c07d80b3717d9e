// Options shared by the handlers that end in a classification: how many labels to return, and their names.
import Joi from 'joi';

export const topK = Joi.number().integer().min(1).max(1000).default(5)
    .description('labels returned per item, best first (capped at the number of classes)');

export const labels = Joi.array().items(Joi.string()).min(1)
    .description('class names by output index; default: id2label from the model folder\'s config.json, else "LABEL_<i>"');

export interface ClassifyOptions {
    top_k: number;
    labels?: string[];
}
