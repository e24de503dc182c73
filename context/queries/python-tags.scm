; Python tags: definitions, references and import statements.
; @name.definition.<kind> is the defined name, @definition.<kind> the whole definition node.

(module
  (expression_statement
    (assignment left: (identifier) @name.definition.constant) @definition.constant))

(class_definition
  name: (identifier) @name.definition.class) @definition.class

(class_definition
  body: (block
    (function_definition name: (identifier) @name.definition.method) @definition.method))

(class_definition
  body: (block
    (decorated_definition
      definition: (function_definition name: (identifier) @name.definition.method) @definition.method)))

(function_definition
  name: (identifier) @name.definition.function) @definition.function

(call
  function: [
    (identifier) @name.reference.call
    (attribute attribute: (identifier) @name.reference.call)
  ])

(class_definition
  superclasses: (argument_list (identifier) @name.reference.class))

(type (identifier) @name.reference.type)

(import_statement) @import.statement
(import_from_statement) @import.statement
