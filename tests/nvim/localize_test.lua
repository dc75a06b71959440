-- Driven by tests/neovim.rs in a headless Neovim: attaches the Basis plugin to a
-- fixture repository, runs :BasisLocalize, and writes what the quickfix list got
-- to the JSON file named by $BASIS_TEST_RESULT. Exits non-zero on any failure.
local result_path = assert(os.getenv('BASIS_TEST_RESULT'))
local function finish(result, code)
  local f = assert(io.open(result_path, 'w'))
  f:write(vim.json.encode(result))
  f:close()
  vim.cmd((code == 0) and 'qa!' or 'cq')
end

local ok, err = pcall(function()
  vim.opt.runtimepath:append(assert(os.getenv('BASIS_NVIM_PLUGIN')))
  require('basis').setup({
    cmd = { assert(os.getenv('BASIS_BIN')), 'lsp' },
    init_options = vim.json.decode(assert(os.getenv('BASIS_INIT_OPTIONS'))),
  })
  vim.cmd('filetype on')
  vim.cmd('edit ' .. assert(os.getenv('BASIS_TEST_FILE')))
  local attached = vim.wait(60000, function()
    return require('basis').client(0) ~= nil
  end, 50)
  assert(attached, 'the basis client did not attach')
  local done = nil
  require('basis').localize(assert(os.getenv('BASIS_TEST_ISSUE')), {
    on_done = function(r) done = r end,
  })
  assert(vim.wait(150000, function() return done ~= nil end, 50), 'basis/localize did not answer')
  local items = {}
  for _, it in ipairs(vim.fn.getqflist()) do
    table.insert(items, { filename = vim.api.nvim_buf_get_name(it.bufnr), lnum = it.lnum, text = it.text })
  end
  local client = require('basis').client(0)
  finish({ items = items, client = client.name, suggestionId = done.suggestionId, modelVersion = done.modelVersion }, 0)
end)
if not ok then
  finish({ error = tostring(err) }, 1)
end
