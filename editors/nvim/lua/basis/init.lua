-- Basis for Neovim: starts `basis lsp` for code buffers and adds :BasisLocalize,
-- which asks the server where an issue would be fixed and puts the answer in the
-- quickfix list. Works with Neovim 0.10 and later.
local M = {}

M.config = {
  cmd = { 'basis', 'lsp' },
  filetypes = { 'python', 'rust', 'typescript', 'typescriptreact', 'javascript', 'javascriptreact', 'go' },
  init_options = {},
}

local function root_dir(bufnr)
  local name = vim.api.nvim_buf_get_name(bufnr)
  local git = vim.fs.find('.git', { path = vim.fs.dirname(name), upward = true })[1]
  return git and vim.fs.dirname(git) or vim.fn.getcwd()
end

local function start(bufnr)
  return vim.lsp.start({
    name = 'basis',
    cmd = M.config.cmd,
    root_dir = root_dir(bufnr),
    init_options = M.config.init_options,
    handlers = {
      ['basis/modelChanged'] = function(_, params)
        vim.notify(('basis: now serving %s %s'):format(params.model, params.version))
      end,
    },
  }, { bufnr = bufnr })
end

--- The basis client attached to a buffer (or any basis client).
function M.client(bufnr)
  local clients = vim.lsp.get_clients({ name = 'basis', bufnr = bufnr })
  if #clients == 0 then
    clients = vim.lsp.get_clients({ name = 'basis' })
  end
  return clients[1]
end

-- Client methods became `client:request(...)` in 0.11; 0.10 has `client.request(...)`.
local function request(client, method, params, handler, bufnr)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function notify(client, method, params)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

--- Asks for the locations of an issue; fills and opens the quickfix list.
function M.localize(issue, opts)
  opts = opts or {}
  local bufnr = vim.api.nvim_get_current_buf()
  local client = M.client(bufnr)
  if not client then
    vim.notify('basis: the language server is not running', vim.log.levels.ERROR)
    return
  end
  request(client, 'basis/localize', { query = issue, limit = opts.limit or 10 }, function(err, result)
    if err then
      vim.notify('basis/localize failed: ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
      return
    end
    local items = {}
    for _, loc in ipairs(result.locations) do
      table.insert(items, {
        filename = vim.uri_to_fname(loc.uri),
        lnum = loc.range.start.line + 1,
        col = loc.range.start.character + 1,
        text = ('%s (%.2f)'):format(loc.symbol or '', loc.score),
      })
    end
    vim.fn.setqflist({}, ' ', { title = 'basis: ' .. issue, items = items })
    vim.cmd('copen')
    notify(client, 'basis/feedback', { suggestionId = result.suggestionId, kind = 'shown' })
    vim.notify(('basis/localize: %d locations'):format(#items))
    if opts.on_done then
      opts.on_done(result)
    end
  end, bufnr)
end

function M.setup(config)
  M.config = vim.tbl_deep_extend('force', M.config, config or {})
  local group = vim.api.nvim_create_augroup('basis', { clear = true })
  vim.api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args)
      start(args.buf)
    end,
  })
  vim.api.nvim_create_user_command('BasisLocalize', function(args)
    M.localize(args.args)
  end, { nargs = '+', desc = 'Basis: where in this repository would the issue be fixed?' })
end

return M
