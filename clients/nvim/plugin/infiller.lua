-- infiller: user commands. Nothing starts until require("infiller").setup() is called.
if vim.g.loaded_infiller then
  return
end
vim.g.loaded_infiller = true

vim.api.nvim_create_user_command("InfillerStats", function()
  require("infiller").show_stats()
end, { desc = "infiller: show the completion statistics" })
