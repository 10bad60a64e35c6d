// Stands in for ajv in the CLI bundle (scripts/cli-bundle.js): conf constructs ajv only for a
// `schema`, which nixvm never passes. Constructing it anyway is a bug, said loudly.
export class Ajv2020 {
  constructor() {
    throw new Error('ajv is left out of the nixvm bundle: conf must be used without a schema.');
  }
}
export default function ajvFormats() {}
