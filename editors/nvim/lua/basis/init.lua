-- Basis for Neovim: starts `basis lsp` for code buffers and adds the skills:
--   :BasisLocalize {issue}     where would the issue be fixed (quickfix list)
--   :[range]BasisEdit {instr}  rewrite the lines as instructed (the server applies the edit)
--   :BasisTestgen              tests for the function under the cursor, run in the sandbox
--   :BasisReproduce {issue}    a test that shows the issue, run in the sandbox
--   :BasisReview [intent]      review uncommitted changes: diagnostics and a YES/NO verdict
-- The code actions "Basis: edit…" (it asks for the instruction) and "Basis:
-- generate tests for `f`" come through vim.lsp.buf.code_action(). Works with
-- Neovim 0.10 and later.
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

local function current_client()
  local bufnr = vim.api.nvim_get_current_buf()
  local client = M.client(bufnr)
  if not client then
    vim.notify('basis: the language server is not running', vim.log.levels.ERROR)
  end
  return client, bufnr
end

--- Runs a server command; `on_done(err, result)` hears the answer.
local function execute(command, argument, on_done)
  local client, bufnr = current_client()
  if not client then
    return
  end
  request(client, 'workspace/executeCommand', { command = command, arguments = { argument } }, function(err, result)
    if err then
      vim.notify(('basis: %s failed: %s'):format(command, err.message or vim.inspect(err)), vim.log.levels.ERROR)
    end
    if on_done then
      on_done(err, result)
    end
  end, bufnr)
end

--- Rewrites lines `first`..`last` (1-based, inclusive) of the current buffer as
--- `instruction` says. The server computes the edit and applies it with
--- workspace/applyEdit (undo with `u`).
function M.edit(instruction, first, last, on_done)
  local uri = vim.uri_from_bufnr(0)
  local range = { start = { line = first - 1, character = 0 }, ['end'] = { line = last, character = 0 } }
  execute('basis.edit', { uri = uri, range = range, instruction = instruction }, on_done)
end

--- Tests for the function under the cursor; the outcome of their sandbox run
--- arrives as a message.
function M.testgen(on_done)
  local pos = vim.api.nvim_win_get_cursor(0)
  local uri = vim.uri_from_bufnr(0)
  execute('basis.testgen', { uri = uri, position = { line = pos[1] - 1, character = pos[2] } }, on_done)
end

--- A test that reproduces `issue`, written to the workspace and run in the sandbox.
function M.reproduce(issue, on_done)
  execute('basis.reproduce', { issue = issue }, function(err, result)
    if result then
      vim.notify('basis: ' .. result.message, result.reproduced and vim.log.levels.INFO or vim.log.levels.WARN)
    end
    if on_done then
      on_done(err, result)
    end
  end)
end

--- Reviews the uncommitted changes (unsaved buffers included) against HEAD; the
--- comments arrive as diagnostics with quick fixes.
function M.review(intent, on_done)
  local arg = vim.empty_dict()
  if intent and intent ~= '' then
    arg = { intent = intent }
  end
  execute('basis.review', arg, on_done)
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
  vim.api.nvim_create_user_command('BasisEdit', function(args)
    M.edit(args.args, args.line1, args.line2)
  end, { nargs = '+', range = true, desc = 'Basis: rewrite these lines as instructed' })
  vim.api.nvim_create_user_command('BasisTestgen', function()
    M.testgen()
  end, { desc = 'Basis: write and run tests for the function under the cursor' })
  vim.api.nvim_create_user_command('BasisReproduce', function(args)
    M.reproduce(args.args)
  end, { nargs = '+', desc = 'Basis: write and run a test that shows the issue' })
  vim.api.nvim_create_user_command('BasisReview', function(args)
    M.review(args.args)
  end, { nargs = '*', desc = 'Basis: review the uncommitted changes' })
  -- The "Basis: edit…" code action leaves the instruction to the client.
  vim.lsp.commands['basis.edit'] = function(command, ctx)
    local argument = vim.deepcopy(command.arguments[1])
    vim.ui.input({ prompt = 'Basis: edit… ' }, function(instruction)
      if not instruction or instruction == '' then
        return
      end
      argument.instruction = instruction
      local client = vim.lsp.get_client_by_id(ctx.client_id)
      request(client, 'workspace/executeCommand', { command = 'basis.edit', arguments = { argument } }, function(err)
        if err then
          vim.notify('basis: edit failed: ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
        end
      end, ctx.bufnr)
    end)
  end
end

return M
