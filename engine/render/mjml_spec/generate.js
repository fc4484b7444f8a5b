// Writes components.json: MJML's published components, their attributes and allowed children.
// Run from a folder where `npm install mjml@VERSION` was done:  node generate.js > components.json
// Everything comes from MJML's own packages (mjml-preset-core, mjml-validator, mjml-core);
// nothing is written by hand here.
const preset = require("mjml-preset-core");
const validator = require("mjml-validator");
const { version } = require("mjml/package.json");

const components = {};
for (const component of preset.components) {
  const name = component.componentName;
  components[name] = {
    attributes: Object.keys(component.allowedAttributes || {}).sort(),
    ending_tag: Boolean(component.endingTag),
  };
}
const children = {};
const dependencies = validator.assignDependencies({}, validator.dependencies, preset.dependencies);
for (const [parent, allowed] of Object.entries(dependencies)) {
  children[parent] = allowed.map((entry) => (entry instanceof RegExp ? { pattern: entry.source } : entry));
}
// From mjml-validator's rules: tags with no component that are allowed anyway, and the attributes
// every component takes.
const source = require("fs").readFileSync(require.resolve("mjml-validator/lib/rules/validTag.js"), "utf8");
const componentLess = JSON.parse(source.match(/componentLessTags = (\[[^\]]*\])/)[1].replace(/'/g, '"'));
const attrs = require("fs").readFileSync(require.resolve("mjml-validator/lib/rules/validAttributes.js"), "utf8");
const global = JSON.parse(attrs.match(/WHITELIST = (\[[^\]]*\])/)[1].replace(/'/g, '"'));
process.stdout.write(
  JSON.stringify(
    { mjml_version: version, components, children, component_less_tags: componentLess, global_attributes: global },
    null,
    1,
  ) + "\n",
);
